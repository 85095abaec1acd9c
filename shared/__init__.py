"""Contracts both sides use: manifest schema, store access, signing, MQTT topics and payloads, config."""
