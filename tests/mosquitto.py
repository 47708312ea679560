"""The tests use the same broker helper as the demo (simulator/iot_bridge_sim/broker.py)."""

from iot_bridge_sim.broker import Broker, free_port

__all__ = ["Broker", "free_port"]
