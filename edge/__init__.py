"""The edge agent: verified model sync, atomic hot-swap, stream inference, MQTT telemetry."""
