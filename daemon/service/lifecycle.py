"""Where the running service is in its life: one value, `Lifecycle`, replaced by its moves.

    SERVING ──reload: quarantined shops released──▶ READMIT_DUE ──readmitted──▶ SERVING
       │  ──reload: shops added or removed──▶ RESTORE_DUE ──restore_started──▶ RESTORING("reload")
       │  ──broke(component)──▶ RESTORING(component) ──recovered──▶ SERVING
       └──stop──▶ STOPPING   (from any phase; a failure's cause is kept: no final settle then)

RESTORING means the engine is no longer in step with Redis (a checkpoint, a delivery or a
restore failed: `cause` names what; or a reload changed the shops: "reload", not a failure):
nothing is consumed, decided or settled until `Service._recover` has brought the checkpointed
state back. A failure or a stop supersedes what was due: a restore claims and loads every
owned shop anyway, quarantined ones included. A move that makes no sense in a phase raises
`LifecycleError` naming both.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Phase(enum.Enum):
    SERVING = "serving"
    READMIT_DUE = "readmit_due"  # a reload released the quarantined shops: readmit them
    RESTORE_DUE = "restore_due"  # a reload changed the shops: restore after the next batch
    RESTORING = "restoring"  # out of step with Redis (`cause`): restore before going on
    STOPPING = "stopping"  # asked to stop: the batch in hand is finished, then the loop ends


class LifecycleError(RuntimeError):
    """A move that makes no sense in the current phase (a bug)."""


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """The phase, and why the engine is out of step with Redis (RESTORING always says why;
    STOPPING does if it stopped while out of step, None otherwise)."""

    phase: Phase = Phase.SERVING
    cause: str | None = None

    def __post_init__(self) -> None:
        if self.cause is None and self.phase is Phase.RESTORING:
            raise LifecycleError("restoring without a cause")
        if self.cause is not None and self.phase not in (Phase.RESTORING, Phase.STOPPING):
            raise LifecycleError(f"{self.phase.value} with cause {self.cause!r}")

    @property
    def in_step(self) -> bool:
        """Whether the engine holds what Redis holds: batches may be applied and settled."""
        return self.cause is None

    @property
    def stopping(self) -> bool:
        return self.phase is Phase.STOPPING

    def stop(self) -> Lifecycle:
        """Asked to stop (SIGTERM, SIGINT): from any phase."""
        return Lifecycle(Phase.STOPPING, self.cause)

    def broke(self, component: str) -> Lifecycle:
        """A checkpoint, a delivery or a restore failed: restore (or, stopping, skip the
        final settle)."""
        return Lifecycle(Phase.STOPPING if self.stopping else Phase.RESTORING, component)

    def recovered(self) -> Lifecycle:
        """The checkpointed state is back."""
        if self.phase is Phase.RESTORING:
            return SERVING
        if self.stopping:
            return Lifecycle(Phase.STOPPING)
        raise LifecycleError(f"recovered while {self.phase.value}")

    def restore_due(self) -> Lifecycle:
        """A reload added or removed shops: their partitions are claimed and restored again
        after the batch that checkpoints the reload's own outputs."""
        if self.phase in (Phase.SERVING, Phase.READMIT_DUE):
            return Lifecycle(Phase.RESTORE_DUE)
        return self  # a restore or a stop is on its way already

    def readmit_due(self) -> Lifecycle:
        """A reload released the quarantined shops: readmit them before the next batch."""
        return Lifecycle(Phase.READMIT_DUE) if self.phase is Phase.SERVING else self

    def restore_started(self) -> Lifecycle:
        """The batch after the reload is checkpointed: restore now."""
        if self.phase is not Phase.RESTORE_DUE:
            raise LifecycleError(f"restore started while {self.phase.value}")
        return Lifecycle(Phase.RESTORING, "reload")

    def readmitted(self) -> Lifecycle:
        """The readmission a reload asked for is under way."""
        if self.phase is not Phase.READMIT_DUE:
            raise LifecycleError(f"readmitted while {self.phase.value}")
        return SERVING


SERVING = Lifecycle()
