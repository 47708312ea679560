"""CoAP devices (RFC 7252): IoT Bridge is a client of each device (docs/protocols/coap.md)."""
