"""Shared fixtures: real mosquitto brokers and Home Assistant test set-up."""

from __future__ import annotations

import logging
from collections.abc import Generator

import pytest

# Home Assistant puts the test plugin's own custom_components first on sys.path when
# hass starts: importing ours here first keeps the loader finding IoT Bridge.
import custom_components.iot_bridge  # noqa: F401

from .mosquitto import Broker

BROKER_USER = "bridge"
BROKER_PASSWORD = "s3cret-pass"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load integrations from custom_components."""


class UsageReports(logging.Handler):
    """Collects Home Assistant's reports of deprecated or wrong use that name IoT Bridge.

    Its frame helper (and the deprecation helper) log them as warnings when integration code
    calls something that will stop working in a later release; only a run on the newest
    Home Assistant shows them, so every test on that leg checks for them.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "iot_bridge" in message and (
            "Detected that" in message or "deprecated" in message.lower()
        ):
            self.reports.append(message)


@pytest.fixture(autouse=True)
def usage_reports() -> Generator[UsageReports]:
    """Fail any test during which Home Assistant reports a deprecated use by IoT Bridge."""
    handler = UsageReports()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    assert not handler.reports, "Home Assistant reported a deprecated use:\n" + "\n".join(
        handler.reports
    )


@pytest.fixture(scope="session")
def mqtt_broker() -> Generator[Broker]:
    """One anonymous broker shared by the whole session."""
    broker = Broker()
    broker.start()
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def auth_broker() -> Generator[Broker]:
    """A broker that demands a username and password."""
    broker = Broker(users={BROKER_USER: BROKER_PASSWORD})
    broker.start()
    yield broker
    broker.close()


@pytest.fixture
def own_broker() -> Generator[Broker]:
    """A broker this test may stop and restart."""
    broker = Broker()
    broker.start()
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def tls_broker() -> Generator[Broker]:
    """A broker that only speaks TLS, with a certificate from a CA of its own."""
    broker = Broker(tls=True)
    broker.start()
    yield broker
    broker.close()
