"""The service's lifecycle (daemon.service.lifecycle) as one value: each move from each
phase, and the combinations it cannot hold."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from daemon.service.lifecycle import SERVING, Lifecycle, LifecycleError, Phase

READMIT_DUE = Lifecycle(Phase.READMIT_DUE)
RESTORE_DUE = Lifecycle(Phase.RESTORE_DUE)
REDIS_DOWN = Lifecycle(Phase.RESTORING, "redis")
RELOADING = Lifecycle(Phase.RESTORING, "reload")
STOPPING = Lifecycle(Phase.STOPPING)
STOPPING_BROKEN = Lifecycle(Phase.STOPPING, "kafka")

Move = Callable[[Lifecycle], Lifecycle]
MOVES: list[tuple[Lifecycle, str, Move, Lifecycle]] = [
    (SERVING, "stop", Lifecycle.stop, STOPPING),
    (SERVING, "broke", lambda s: s.broke("redis"), REDIS_DOWN),
    (SERVING, "readmit_due", Lifecycle.readmit_due, READMIT_DUE),
    (SERVING, "restore_due", Lifecycle.restore_due, RESTORE_DUE),
    (READMIT_DUE, "readmitted", Lifecycle.readmitted, SERVING),
    (READMIT_DUE, "restore_due", Lifecycle.restore_due, RESTORE_DUE),
    (READMIT_DUE, "broke", lambda s: s.broke("redis"), REDIS_DOWN),
    (RESTORE_DUE, "restore_started", Lifecycle.restore_started, RELOADING),
    (RESTORE_DUE, "readmit_due", Lifecycle.readmit_due, RESTORE_DUE),
    (RESTORE_DUE, "broke", lambda s: s.broke("redis"), REDIS_DOWN),
    (RELOADING, "recovered", Lifecycle.recovered, SERVING),
    (REDIS_DOWN, "recovered", Lifecycle.recovered, SERVING),
    (REDIS_DOWN, "broke", lambda s: s.broke("restore"), Lifecycle(Phase.RESTORING, "restore")),
    (REDIS_DOWN, "restore_due", Lifecycle.restore_due, REDIS_DOWN),
    (REDIS_DOWN, "readmit_due", Lifecycle.readmit_due, REDIS_DOWN),
    (REDIS_DOWN, "stop", Lifecycle.stop, Lifecycle(Phase.STOPPING, "redis")),
    (STOPPING, "broke", lambda s: s.broke("kafka"), STOPPING_BROKEN),
    (STOPPING_BROKEN, "recovered", Lifecycle.recovered, STOPPING),
    (STOPPING, "restore_due", Lifecycle.restore_due, STOPPING),
    (STOPPING, "stop", Lifecycle.stop, STOPPING),
]


@pytest.mark.parametrize(("before", "move", "after"), [(b, m, a) for b, _, m, a in MOVES],
                         ids=[f"{b.phase.value}-{name}" for b, name, _, _ in MOVES])  # fmt: skip
def test_each_move_lands_in_its_phase(before: Lifecycle, move: Move, after: Lifecycle) -> None:
    assert move(before) == after


@pytest.mark.parametrize(
    ("state", "move"),
    [
        (SERVING, Lifecycle.recovered),
        (SERVING, Lifecycle.restore_started),
        (SERVING, Lifecycle.readmitted),
        (READMIT_DUE, Lifecycle.restore_started),
        (REDIS_DOWN, Lifecycle.readmitted),
    ],
)
def test_a_move_that_makes_no_sense_names_the_phase(state: Lifecycle, move: Move) -> None:
    with pytest.raises(LifecycleError, match=state.phase.value):
        move(state)


@pytest.mark.parametrize(
    ("phase", "cause"),
    [(Phase.RESTORING, None), (Phase.SERVING, "redis"), (Phase.READMIT_DUE, "reload")],
)
def test_a_cause_belongs_to_restoring_and_stopping_only(phase: Phase, cause: str | None) -> None:
    with pytest.raises(LifecycleError):
        Lifecycle(phase, cause)


def test_only_a_lifecycle_without_a_cause_is_in_step_with_redis() -> None:
    assert SERVING.in_step and READMIT_DUE.in_step and RESTORE_DUE.in_step and STOPPING.in_step
    assert not REDIS_DOWN.in_step and not RELOADING.in_step and not STOPPING_BROKEN.in_step
