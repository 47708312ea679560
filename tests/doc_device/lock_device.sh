#!/usr/bin/env bash
# A one-door parcel locker built from docs/protocols/mqtt.md with nothing but
# Debian's mosquitto clients (mosquitto_sub / mosquitto_pub, MQTT 5), bash and jq.
#
#   lock_device.sh HOST PORT PREFIX DEVICE_ID
#
# mosquitto_sub keeps the device's one long-lived connection: it carries the Last Will
# and the command subscription. Every outgoing message is a short mosquitto_pub.
# Assumes the host clock is synchronised (the deadline check relies on it).
set -euo pipefail

if [[ $# -ne 4 ]]; then
    echo "usage: $0 HOST PORT PREFIX DEVICE_ID" >&2
    exit 2
fi
host=$1 port=$2 prefix=$3 dev=$4
base="$prefix/$dev"
sep=$'\x1f' # field separator in mosquitto_sub's output (never in topics or JSON)

lock_state=locked # door_lock: locked / unlocked / open
door=false        # door sensor: true = open

declare -A answers=() # command id -> the answer we gave
recent=()             # handled ids, oldest first (we keep 16)

pub() { mosquitto_pub -V mqttv5 -h "$host" -p "$port" --nodelay -q 1 "$@"; }

state_json() {
    jq -nc --arg lock "$lock_state" --argjson door "$door" \
        '{door_lock: $lock, door: $door}'
}

publish_state() { pub -r -t "$base/state" -m "$(state_json)"; }

# Carry out one action and set $answer (without the id). Not run in a subshell:
# it changes the device's state.
perform() {
    local capability=$1 action=$2
    if [[ $capability != door_lock ]]; then
        answer=$(jq -nc --arg c "$capability" '{status: "error", reason: "cannot command \($c)"}')
        return
    fi
    case $action in
        lock) lock_state=locked door=false ;;
        unlock) lock_state=unlocked door=false ;;
        open) lock_state=open door=true ;;
        *)
            answer=$(jq -nc --arg a "$action" '{status: "error", reason: "unknown action \($a)"}')
            return
            ;;
    esac
    publish_state
    answer=$(jq -nc --argjson state "$(state_json)" '{status: "ok", state: $state}')
}

remember() { # id answer
    answers[$1]=$2
    recent+=("$1")
    if ((${#recent[@]} > 16)); then
        unset 'answers[${recent[0]}]'
        recent=("${recent[@]:1}")
    fi
}

handle_command() { # response_topic correlation_data payload
    local response_topic=$1 correlation=$2 payload=$3 fields id capability action reply_to expired answer
    # One jq call: validate and pull out the fields (deadline already compared with now).
    if ! fields=$(jq -r --arg sep "$sep" '
            select(type == "object" and (.id | type) == "string")
            | [.id, (.capability // ""), (.action // ""), (.reply_to // ""),
               ((.deadline | type) == "number" and now > .deadline)]
            | map(tostring) | join($sep)' <<<"$payload" 2>/dev/null) || [[ -z $fields ]]; then
        echo "$dev: dropped a command that is not valid JSON: $payload"
        return
    fi
    IFS=$sep read -r id capability action reply_to expired <<<"$fields"
    local topic=${response_topic:-$reply_to}
    echo "$dev <- $action $capability id=$id"
    if [[ -z $topic ]]; then
        echo "$dev: command $id names no reply topic, not answered"
        return
    fi

    if [[ -n ${answers[$id]+set} ]]; then
        answer=${answers[$id]}
        echo "$dev -> (repeat, not acting again) $answer"
    else
        if [[ $expired == true ]]; then
            answer='{"status": "error", "reason": "expired"}'
        else
            perform "$capability" "$action"
        fi
        answer=$(jq -c --arg id "$id" '{id: $id} + .' <<<"$answer")
        remember "$id" "$answer"
        echo "$dev -> $answer"
    fi

    local props=()
    if [[ -n $correlation ]]; then
        props=(-D publish correlation-data "$correlation")
    fi
    pub -t "$topic" "${props[@]}" -m "$answer"
}

announce() {
    pub -r -t "$base/config" -m "$(jq -nc --arg id "$dev" '{
        id: $id, name: "Shell locker", manufacturer: "IoT Bridge docs", model: "lock_device.sh",
        capabilities: [
          {kind: "lock", key: "door_lock", name: "Door", confirmable: true},
          {kind: "binary_sensor", key: "door", name: "Door open", device_class: "door"}
        ]}')"
    pub -r -t "$base/availability" -m online
    publish_state
    echo "$dev: online on $host:$port under $base"
}

sub_pid=
cleanup() {
    trap - EXIT
    [[ -n $sub_pid ]] && kill "$sub_pid" 2>/dev/null
    # Killed with TERM, mosquitto_sub 2.x asks the broker to send the Will; older clients
    # disconnect cleanly without it, so say it ourselves as well.
    pub -r -t "$base/availability" -m offline 2>/dev/null || true
    echo "$dev: offline"
}
trap cleanup EXIT
trap 'exit 0' TERM INT

# -d prints protocol debug lines; we only use "Subscribed ..." (the SUBACK) to know that
# commands can reach us before we announce ourselves. mosquitto_sub reconnects by itself
# and subscribes again, so we announce again after each reconnection. Messages are printed by -F as
# CMD<sep>response topic<sep>correlation data<sep>payload (payload must be one line).
# stdbuf -oL: mosquitto_sub does not flush its debug lines when writing to a pipe.
exec 3< <(exec stdbuf -oL mosquitto_sub -V mqttv5 -h "$host" -p "$port" --nodelay -d -i "$dev" \
    --will-topic "$base/availability" --will-payload offline --will-qos 1 --will-retain \
    -q 1 -t "$base/command" -F "CMD$sep%R$sep%D$sep%p")
sub_pid=$!

while IFS= read -r -u 3 line; do
    case $line in
        "Subscribed (mid:"*) announce ;;
        "CMD$sep"*)
            IFS=$sep read -r _ response_topic correlation payload <<<"$line"
            handle_command "$response_topic" "$correlation" "$payload"
            ;;
    esac
done
echo "$dev: lost the broker connection" >&2
exit 1
