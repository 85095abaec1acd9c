"""When the shadow check runs: always on sync.shadow_every, else on a rollout's canary whose device can afford it.

A canary is marked by the fleet in its signed desired state (shared.desired_state.DesiredState.canary). Affording it
is the shadow check's own measure (edge.shadow.ShadowCheck probes the previous version's run time on the first
sampled frame against the budget this policy gives); configured sync.shadow_every runs without a budget.
"""

from __future__ import annotations

from collections.abc import Callable

from edge.config import SyncConfig


class ShadowPolicy:
    """Reads the live sync config and the desired state's canary mark on every call (a live change applies)."""

    def __init__(self, cfg: Callable[[], SyncConfig], canary: Callable[[], bool]) -> None:
        self._cfg = cfg
        self._canary = canary

    def every(self) -> int | None:
        """Every how many frames the shadow check samples now; None: off."""
        cfg = self._cfg()
        if cfg.shadow_every is not None:
            return cfg.shadow_every
        if cfg.shadow_canary_budget_ms is not None and self._canary():
            return cfg.shadow_canary_every
        return None

    def budget_ms(self) -> float | None:
        """The most the previous version may take per frame for the shadow check to run; None: no limit (the
        operator turned it on with sync.shadow_every)."""
        cfg = self._cfg()
        return None if cfg.shadow_every is not None else cfg.shadow_canary_budget_ms
