"""The facts of one shop that every part reads: its configuration, clock, agents and buyers.

Each part keeps its own state besides (routing its candidates and indexes, sessions the
recent session ends, queues the arrival counter, effects the outputs and change marks) and
reaches the others only through their methods. docs/architecture.md draws the parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from daemon.core.config import ShopConfig
from daemon.core.experiment import Experiments
from daemon.core.model import AgentState, Buyer
from daemon.core.timers import TimerHeap


@dataclass(slots=True, eq=False)
class ShopState:
    """One shop's configuration, clock (epoch ms, never backwards), agents and buyers."""

    config: ShopConfig
    agents: dict[str, AgentState]
    buyers: dict[str, Buyer] = field(default_factory=dict)
    timers: TimerHeap = field(default_factory=TimerHeap)
    now: int = 0
    config_at: int | None = None  # when a reload put `config` in force; None: since built
    experiments: Experiments = field(default_factory=Experiments)  # its grey tests (§3.7)
    # what a newer Fenliu stored in the shop's meta part (snapshot.py): the shop format it
    # asked of readers, and the fields this version does not know, written back as they were
    stored_format: int = 0
    kept: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fresh(cls, config: ShopConfig) -> ShopState:
        """A shop with its configured agents, all offline, and no buyers (and the
        experiment its file runs, started at time 0: the first event's clock)."""
        state = cls(config, {a.id: AgentState(a.id, i) for i, a in enumerate(config.agents)})
        state.experiments.configure(config.experiment, 0, config.sticky_window)
        return state

    def advance(self, now: int) -> None:
        """Move the clock to `now` unless it is already later."""
        self.now = max(self.now, now)
