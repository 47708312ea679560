"""Example counts for the property and fuzz tests of every protocol.

Property tests run a modest number of examples by default (the suite shares 2 cores);
IOT_BRIDGE_FUZZ_EXAMPLES=100000 turns the same tests into a long fuzz run (scripts/fuzz).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZ_EXAMPLES_VARIABLE = "IOT_BRIDGE_FUZZ_EXAMPLES"
_OVERRIDE = os.environ.get(FUZZ_EXAMPLES_VARIABLE)


def property_settings(default_examples: int) -> settings:
    """Settings for one property test: its default count unless the fuzz variable is set."""
    return settings(
        max_examples=int(_OVERRIDE) if _OVERRIDE else default_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
