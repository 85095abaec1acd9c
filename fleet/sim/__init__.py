"""The fleet simulator: many simulated agents in one process, as real MQTT clients on one asyncio loop.

They speak the device side of the MQTT contract with the same shared/ code a real agent uses (signed commands,
signed desired state, payload schemas, the metric table), so real and simulated devices mix in one fleet.
"""
