"""Benchmark set-up: a real Home Assistant (the test plugin's `hass`), tuned to measure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator

import pytest

# Home Assistant puts the test plugin's own custom_components first on sys.path when
# hass starts: importing ours here first keeps the loader finding IoT Bridge.
import custom_components.iot_bridge  # noqa: F401


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load integrations from custom_components."""


@pytest.fixture(autouse=True)
def enable_event_loop_debug(event_loop: asyncio.AbstractEventLoop) -> None:
    """Replace the plugin's fixture of this name: asyncio debug mode slows every callback.

    A user's Home Assistant runs without it, so the numbers must too.
    """
    event_loop.set_debug(False)


@pytest.fixture(autouse=True)
def production_log_level() -> Generator[None]:
    """The test plugin logs at INFO (DEBUG with -v); a default install logs WARNING."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    yield
    root.setLevel(level)
