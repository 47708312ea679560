"""Admission control for the LwM2M server: what one sender may cost the others.

The server's port is open to anything that can send a datagram. A flood (Registers with
made-up endpoint names, garbage at line rate) must not starve the registered clients, so:

- a datagram whose first bytes cannot be CoAP is dropped before aiocoap parses it;
- requests (not answers or notifications) from one source, an address *and port*, are
  limited; the excess is dropped before aiocoap parses it;
- Registers from one source are limited much more tightly, answered 5.03 with Max-Age
  (RFC 7252 5.9.3.4: try again after that many seconds);
- registrations of endpoints that are not devices yet (waiting for the user, or still
  being read) are capped; beyond the cap new endpoints get 5.03 too, known ones never.

The source is an address and port, not the address alone: devices behind one NAT (or a
whole simulated fleet on 127.0.0.1) share an address, and each client has its own socket.
A flooder that changes ports gets a fresh budget each time; the pending cap bounds what
that can cost.

Every offending source is logged once (then only counted): see `FirstSight`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final

# How many sources the limiters and the once-per-source warnings remember. A forgotten
# source starts again with a full bucket: the same as one never seen.
_MAX_SOURCES: Final = 4096


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """The server's limits; the defaults are documented in docs/protocols/lwm2m.md."""

    # Requests per second from one source (address and port), and the burst allowed.
    request_rate: float = 200.0
    request_burst: float = 400.0
    # Registers per second from one source, and the burst allowed.
    register_rate: float = 1.0
    register_burst: float = 5.0
    # Registrations of endpoints that are not devices yet.
    max_pending: int = 1000


class RateLimiter:
    """A token bucket per key: `rate` per second, at most `burst` at once.

    Bounded: beyond `max_keys` the longest-remembered key is forgotten (its bucket would
    be full again soon anyway).
    """

    __slots__ = ("_buckets", "_burst", "_clock", "_max_keys", "_rate")

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = _MAX_SOURCES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limiter needs a positive rate and a burst of at least 1")
        self._rate = rate
        self._burst = burst
        self._max_keys = max_keys
        self._clock = clock
        # key -> (tokens left, when they were counted)
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: Hashable) -> bool:
        """Take one token for `key`; False (and nothing taken) when none is left."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                del self._buckets[next(iter(self._buckets))]
            self._buckets[key] = (self._burst - 1, now)
            return True
        tokens = min(self._burst, bucket[0] + (now - bucket[1]) * self._rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True

    def retry_after(self, key: Hashable) -> float:
        """Seconds until `key` has a token again (0 if it has one now)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = min(self._burst, bucket[0] + (self._clock() - bucket[1]) * self._rate)
        return max(0.0, (1 - tokens) / self._rate)


class FirstSight:
    """Which sources were seen already (bounded): warn about each offender once."""

    __slots__ = ("_max", "_seen")

    def __init__(self, max_sources: int = _MAX_SOURCES) -> None:
        self._max = max_sources
        self._seen: dict[Hashable, None] = {}

    def first(self, source: Hashable) -> bool:
        """True the first time `source` is seen (or after it was forgotten)."""
        if source in self._seen:
            return False
        if len(self._seen) >= self._max:
            del self._seen[next(iter(self._seen))]
        self._seen[source] = None
        return True
