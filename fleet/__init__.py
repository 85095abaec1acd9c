"""The fleet control plane: a device registry fed by MQTT, desired state, signed commands and rollouts.

It imports only `shared/`: it speaks to devices through the MQTT contract, as any third-party tool could.
"""
