"""Names that moved between the Home Assistant versions IoT Bridge supports (2025.4 onward).

Picked by what exists, never by version strings. Each pair names the current home first;
the second line serves the oldest supported release. Both import lines carry an ignore
because mypy, run against either version, finds one of them missing.
"""

from __future__ import annotations

# Schemas: Home Assistant 2026 validates with probatio (voluptuous-compatible) and types its
# APIs with it; 2025.4 uses voluptuous.
try:
    import probatio as vol  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - Home Assistant before probatio
    import voluptuous as vol  # type: ignore[no-redef, unused-ignore]

# Platform constants moved from each platform's package into its const module.
try:
    from homeassistant.components.binary_sensor.const import (  # type: ignore[import-not-found, unused-ignore]
        BinarySensorDeviceClass,
    )
except ImportError:  # pragma: no cover - Home Assistant 2025.4
    from homeassistant.components.binary_sensor import (  # type: ignore[no-redef, attr-defined, unused-ignore]
        BinarySensorDeviceClass,
    )
try:
    from homeassistant.components.button.const import (  # type: ignore[attr-defined, unused-ignore]
        ButtonDeviceClass,
    )
except ImportError:  # pragma: no cover - Home Assistant 2025.4
    from homeassistant.components.button import (  # type: ignore[no-redef, attr-defined, unused-ignore]
        ButtonDeviceClass,
    )
try:
    from homeassistant.components.light.const import (  # type: ignore[attr-defined, unused-ignore]
        ATTR_BRIGHTNESS,
    )
except ImportError:  # pragma: no cover - Home Assistant 2025.4
    from homeassistant.components.light import (  # type: ignore[no-redef, attr-defined, unused-ignore]
        ATTR_BRIGHTNESS,
    )
try:
    from homeassistant.components.lock.const import (  # type: ignore[attr-defined, unused-ignore]
        LockEntityFeature,
    )
except ImportError:  # pragma: no cover - Home Assistant 2025.4
    from homeassistant.components.lock import (  # type: ignore[no-redef, attr-defined, unused-ignore]
        LockEntityFeature,
    )
try:
    from homeassistant.components.switch.const import (  # type: ignore[attr-defined, unused-ignore]
        SwitchDeviceClass,
    )
except ImportError:  # pragma: no cover - Home Assistant 2025.4
    from homeassistant.components.switch import (  # type: ignore[no-redef, attr-defined, unused-ignore]
        SwitchDeviceClass,
    )
# MQTT discovery data: its home in helpers since 2025.1 (the mqtt package's alias is deprecated).
# The tracker entity's module moved (config_entry is a deprecated alias since 2026); the
# package re-exports it on every supported version, without declaring it for type checkers.
from homeassistant.components.device_tracker import (  # type: ignore[attr-defined, unused-ignore]
    TrackerEntity,
)
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo

__all__ = [
    "ATTR_BRIGHTNESS",
    "BinarySensorDeviceClass",
    "ButtonDeviceClass",
    "LockEntityFeature",
    "MqttServiceInfo",
    "SwitchDeviceClass",
    "TrackerEntity",
    "vol",
]
