"""The control plane's exception family; the CLI prints each as one line and exits non-zero.

    EdgeferryError (shared.errors)
    └── FleetError
        ├── FleetConfigError      the fleet config or a key it names cannot be used
        ├── StorageError          the database is unreachable, or its schema is not ours
        ├── UnknownDeviceError    no device with that id has ever reported to this fleet
        ├── EmptyGroupError       a group has no devices, so there is nothing to act on
        ├── VersionCheckError     a model version is missing from the store or fails verification there
        ├── BrokerError           the MQTT broker is unreachable or refused a publish
        │   └── PublishRefusedError   the broker answered a publish with a refusal (e.g. 135 Not authorized)
        ├── NothingToRollBackError no earlier desired version to return to
        ├── RolloutError          a rollout cannot be started or changed as asked
        │   ├── RolloutConflictError  the group already has a rollout running
        │   ├── UnknownRolloutError   no rollout with that id (or none on that group)
        │   └── RolloutStateError     the rollout is not in a state that allows the action
        └── SimulatorError        the simulator's options cannot be used (behaviour mix, broker, keys)
"""

from __future__ import annotations

from shared.errors import EdgeferryError


class FleetError(EdgeferryError):
    """Base of every error the control plane raises on purpose."""


class FleetConfigError(FleetError):
    """The fleet config, or a key file it names, cannot be used."""


class StorageError(FleetError):
    """The database is unreachable, refuses access, or holds a schema that is not ours."""


class UnknownDeviceError(FleetError):
    """No device with that id has reported to this fleet."""


class EmptyGroupError(FleetError):
    """A group has no devices: a command or deploy to it would reach nobody."""


class VersionCheckError(FleetError):
    """A model version does not exist in the store, or fails its signature or file checks there."""


class BrokerError(FleetError):
    """The MQTT broker is unreachable, refused the connection, or did not acknowledge a publish."""


class PublishRefusedError(BrokerError):
    """The broker acknowledged a publish with a refusal reason code (MQTT 5), typically its ACL's 135 Not
    authorized: the message was dropped, and the caller can say so instead of claiming it was sent."""

    def __init__(self, message: str, topic: str, reason_code: int) -> None:
        super().__init__(message)
        self.topic = topic
        self.reason_code = reason_code


class NothingToRollBackError(FleetError):
    """A rollback was asked for where no earlier desired version is recorded."""


class RolloutError(FleetError):
    """A rollout cannot be started or changed as asked."""


class RolloutConflictError(RolloutError):
    """The group already has a rollout running: one rollout per group at a time."""


class UnknownRolloutError(RolloutError):
    """No rollout with that id, or none on that group."""


class RolloutStateError(RolloutError):
    """The rollout's state does not allow the action (resume a running one, promote a finished one)."""


class SimulatorError(FleetError):
    """The fleet simulator's options cannot be used: a bad behaviour mix, broker address or key file."""
