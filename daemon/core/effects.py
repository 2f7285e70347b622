"""What a shop's decisions leave behind: the output events, and what changed for checkpoints.

Every part of a shop that decides something writes it here, and only here: `assignment`,
`session_closed` and `queue_update` build the output events of contract §1.3 (their ids are
derived from the inquiry, so a replay gives the same ids), and `buyer_changed`,
`agent_changed` and `other_changed` mark the rows a checkpoint must write again. The shop
front hands the outputs to its caller with `take` after each event or timer.
"""

from __future__ import annotations

from daemon.core.experiment import Experiments
from daemon.core.model import Changes
from topics.events import (
    Assignment,
    AssignReason,
    CloseReason,
    InputEvent,
    Mode,
    OutputEvent,
    QueueStatus,
    QueueUpdate,
    SessionClosed,
)


class Effects:
    """Outputs decided since the last `take`, and change marks when the shop is tracked."""

    __slots__ = ("changes", "config", "experiments", "out", "shop_id")

    def __init__(self, shop_id: str, config: str, experiments: Experiments, *, track: bool) -> None:
        self.shop_id = shop_id
        self.config = config  # the shop file's version, carried by every output
        self.experiments = experiments  # the shop's (state.py): outputs carry the arm
        self.out: list[OutputEvent] = []
        # What changed since the last checkpoint; None when nobody checkpoints (simulator).
        self.changes: Changes | None = Changes() if track else None

    def configured(self, version: str) -> None:
        """A reloaded shop file is in force: outputs from now on carry its version."""
        self.config = version

    def take(self) -> list[OutputEvent]:
        """The outputs decided since the last call."""
        out, self.out = self.out, []
        return out

    # ----------------------------------------------------------------------- change marks

    def buyer_changed(self, buyer_id: str) -> None:
        """The buyer's row must be written again (or deleted)."""
        if self.changes is not None:
            self.changes.buyers.add(buyer_id)

    def agent_changed(self, agent_id: str) -> None:
        """The agent's row must be written again (or deleted)."""
        if self.changes is not None:
            self.changes.agents.add(agent_id)

    def other_changed(self) -> None:
        """Counters, the clock or what candidates learned changed: write the shop's meta."""
        if self.changes is not None:
            self.changes.other = True

    def handled(self, event: InputEvent) -> None:
        """`event` was applied: remember its id, and its buyer's row may have changed."""
        changes = self.changes
        if changes is not None:
            changes.seen.append(event.id)
            buyer_id = getattr(event, "buyer_id", None)
            if buyer_id is not None:
                changes.buyers.add(buyer_id)

    def take_changes(self) -> Changes | None:
        """What changed since the last call, or None if nothing did (tracked shops only)."""
        changes = self.changes
        assert changes is not None, "change marks need a ShopEngine created with track=True"
        if not changes:
            return None
        self.changes = Changes()
        return changes

    def forget_changes(self) -> None:
        """Start afresh: what is stored equals the state (after a restore)."""
        if self.changes is not None:
            self.changes = Changes()

    # ---------------------------------------------------------------------------- outputs

    def assignment(
        self,
        now: int,
        inquiry_id: str,
        buyer_id: str,
        agent_id: str,
        group: str | None,
        reason: AssignReason,
        mode: Mode | None = None,
        waited_ms: int = 0,
    ) -> None:
        """Emit the `assignment` answering `inquiry_id` (or a transfer's event id)."""
        exp = self.experiments.running
        self.out.append(
            Assignment(
                id=f"asg:{inquiry_id}",
                shop_id=self.shop_id,
                ts=now,
                inquiry_id=inquiry_id,
                buyer_id=buyer_id,
                agent_id=agent_id,
                group=group,
                reason=reason,
                mode=mode,
                waited_ms=waited_ms,
                config=self.config,
                experiment=None if exp is None else exp.name,
                arm=None if exp is None else exp.arm_of(buyer_id),
            )
        )

    def session_closed(
        self, now: int, inquiry_id: str, buyer_id: str, agent_id: str, reason: CloseReason
    ) -> None:
        """Emit the `session_closed` of the session `inquiry_id` opened."""
        self.out.append(
            SessionClosed(
                id=f"end:{inquiry_id}",
                shop_id=self.shop_id,
                ts=now,
                buyer_id=buyer_id,
                agent_id=agent_id,
                reason=reason,
                config=self.config,
            )
        )

    def queue_update(
        self,
        now: int,
        inquiry_id: str,
        n: int,
        buyer_id: str,
        group: str | None,
        status: QueueStatus,
        position: int | None,
        estimate: int | None,
    ) -> None:
        """Emit the `n`-th `queue_update` of the queued inquiry `inquiry_id`."""
        exp = self.experiments.running
        self.out.append(
            QueueUpdate(
                id=f"q:{inquiry_id}:{n}",
                shop_id=self.shop_id,
                ts=now,
                inquiry_id=inquiry_id,
                buyer_id=buyer_id,
                group=group,
                status=status,
                position=position,
                estimated_wait_s=estimate,
                config=self.config,
                experiment=None if exp is None else exp.name,
                arm=None if exp is None else exp.arm_of(buyer_id),
            )
        )
