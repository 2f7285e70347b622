"""Invariants of the routing core over random event sequences (contract §2–4 and 6).

Each case is a small random shop and a random sequence of timed steps (`tests/strategies.py`).
A `Driver` feeds the steps to an `Engine`; an `Observer` rebuilds, from the outputs, the
input events and the shop file alone, what the contract says the world looks like — agent
statuses, open sessions, loads and pending replies, queues in order of effective priority
(priority + waited ÷ `priority_aging`) and arrival, the fate of every inquiry — and checks
the invariants as the outputs stream past (the `checks` it is given; its bookkeeping fails
always, since all checks rely on it). One run of a case
judges every invariant at once, rather than one run per invariant. Only the no-stuck-buyer
check also reads the engine's internals, since outputs cannot show an idle agent. Where the
contract is silent the observer follows docs/routing.md (rejected transfers, shifts in
`average`, the unmatched pool, transfers' groups).

The driver wakes the timers (`on_timer(now)`) before handing over each event, so the outputs
of `handle` are exactly the event's own; `test_handle_fires_due_timers_before_the_event`
pins that this changes nothing.

A failure prints the shrunk case (no-op steps left out) and the trace of events and outputs.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from daemon.core.engine import DEFAULT_DEDUP_CAPACITY
from daemon.core.snapshot import ShopDelta, apply_delta
from tests.engine_checks import CHECKS
from tests.engine_model import Driver
from tests.engine_observer import Observer
from tests.strategies import (
    SHOP,
    AgentSays,
    BuyerSays,
    Case,
    Inquiry,
    Status,
    Step,
    Tick,
    ToDeadline,
    cases,
)

pytestmark = pytest.mark.slow  # several seconds; `pytest tests/core -m 'not slow'` leaves these out

PROPERTY = settings(
    max_examples=250,
    deadline=None,
    # No Phase.explain: on Python 3.11 it traces every line and takes minutes per failure.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def observe(case: Case, *checks: str) -> Observer:
    """Run a case through a fresh engine under an observer making `checks`."""
    driver = Driver(case.config)
    observer = Observer(case.config, set(checks), driver.engine)
    for step in case.steps:
        observer.on_step(driver.run(step))
    observer.at_end()
    return observer


# --------------------------------------------------------------------------------- tests


BUSY_BEFORE_LOAD = Case(  # random steps rarely make a busy agent the lightest loaded one
    shop={
        "id": SHOP,
        "busy_threshold": 0,
        "agents": [{"id": "a1", "weight": 2.0}, {"id": "a2"}],
        "groups": [{"name": "g", "agents": ["a1", "a2"]}],
    },
    steps=(
        Step(0, Status("a1", "online")),
        Step(0, Status("a2", "online")),
        Step(1000, Inquiry("b1")),  # a1 (tie, file order): load / weight 0.5
        Step(1000, Inquiry("b2")),  # a2: load / weight 1.0
        Step(1000, BuyerSays("b1")),  # a1 owes a reply: busy
        Step(1000, Inquiry("b3")),  # a2, not busy, despite its higher load / weight
    ),
)

OVERDUE_IS_BUSY = Case(  # contract §3.4 and 3.6: an overdue buyer makes its agent busy
    shop={
        "id": SHOP,
        "replies": {"deadline": 5},
        "agents": [{"id": "a1", "weight": 2.0}, {"id": "a2"}],
        "groups": [{"name": "g", "agents": ["a1", "a2"]}],
    },
    steps=(
        Step(0, Status("a1", "online")),
        Step(0, Status("a2", "online")),
        Step(1000, Inquiry("b1")),  # a1 (tie, file order): load / weight 0.5
        Step(1000, Inquiry("b2")),  # a2: load / weight 1.0
        Step(1000, BuyerSays("b1")),  # a1 owes a reply, not busy (pending 1 <= 4)
        Step(4000, Inquiry("b3")),  # a1: its buyer has waited 4s
        Step(1000, Inquiry("b4")),  # a2: a1's buyer is overdue, a1 busy
        Step(1000, AgentSays("b1", "a1")),  # a1 replies after 6s (late): not busy
        Step(1000, Inquiry("b5")),  # a1 again: load / weight 2 / 2 below a2's 2 / 1
    ),
)

REPEAT_ENTRY_FALLBACK = Case(  # found by Hypothesis: the fallback's session is in a1's group
    shop={
        "id": SHOP,
        "queue": {
            "enabled": True,
            "scope": "groups",
            "groups": ["g2"],  # queueing in g2, not in g1 (so not for a2 in the pool)
            "default_cap": 2,
            "session_timeout": "60s",
            "repeat_entry_window": "2m",
        },
        "agents": [{"id": "a1"}, {"id": "a2"}],
        "groups": [
            {"name": "g1", "agents": ["a2"], "accept_unmatched": True},
            {"name": "g2", "agents": ["a1", "a2"], "accept_unmatched": True},
        ],
    },
    steps=(
        Step(0, Status("a1", "online")),
        Step(0, Status("a2", "online")),
        Step(0, Inquiry("b1")),  # the pool: a1, in g2
        Step(0, Status("a1", "offline")),  # closes b1's session
        Step(0, Inquiry("b1")),  # repeat entry: a1 is offline, so a2 of a1's group g2
        Step(0, ToDeadline()),  # b1's session with a2 times out
        Step(0, Inquiry("b1")),  # repeat entry again: the last session was in g2 (contract §3.5)
    ),
)


MOVE_BEFORE_LINE = Case(  # contract §3.6: random steps rarely strand a buyer beside a line
    shop={
        "id": SHOP,
        "queue": {"enabled": True, "default_cap": 1},
        "replies": {"reassign_after": 30},
        "agents": [{"id": "a1"}, {"id": "a2"}],
        "groups": [{"name": "g", "agents": ["a1", "a2"]}],
    },
    steps=(
        Step(0, Status("a1", "online")),
        Step(0, Inquiry("b1")),  # a1
        Step(1000, BuyerSays("b1")),
        Step(0, ToDeadline()),  # 30 s unanswered, a2 offline: stranded
        Step(1000, Inquiry("b2")),  # a1 at cap: queued
        Step(1000, Status("a2", "online")),  # b1 moves to a2 first, b2 gets a1's freed slot
    ),
)

MOVES_FREE_SLOTS = Case(  # contract §3.6: a move frees the slot another stranded buyer needs
    shop={
        "id": SHOP,
        "mode": "average",
        "queue": {"enabled": True, "default_cap": 2, "session_timeout": 60},
        "replies": {"reassign_after": 30},
        "agents": [{"id": "a1"}, {"id": "a2"}],
        "groups": [{"name": "g", "agents": ["a1", "a2"]}],
    },
    steps=(
        Step(0, Status("a1", "online")),
        Step(0, Status("a2", "online")),
        Step(0, Inquiry("x")),  # a1
        Step(0, Inquiry("y")),  # a2
        Step(0, Inquiry("b1")),  # a1
        Step(0, Inquiry("b2")),  # a2
        Step(1000, BuyerSays("b2")),
        Step(1000, BuyerSays("b1")),
        Step(8000, AgentSays("x", "a1")),  # x's session outlasts y's
        Step(0, BuyerSays("x")),  # not x's first message: never moved for it
        Step(30000, Tick()),  # b2 and b1 stranded: both agents at cap
        Step(20000, Tick()),  # y times out: b1 moves to a2, then b2 to a1
    ),
)

STRANDED_CLOSES = Case(  # contract §3.6: found while teaching this harness moves; random
    shop={  # steps rarely close a stranded session of a buyer who had the agent before
        "id": SHOP,
        "sticky_window": "72h",
        "queue": {"enabled": True, "default_cap": 2, "session_timeout": 60},
        "replies": {"reassign_after": 30},
        "agents": [{"id": "a1"}, {"id": "a2"}],
        "groups": [{"name": "g", "agents": ["a1", "a2"]}],
    },
    steps=(
        Step(0, Status("a1", "online")),
        Step(0, Inquiry("b1")),  # a1
        Step(1000, BuyerSays("b1")),
        Step(1000, AgentSays("b1", "a1")),  # answered: a contact
        Step(61000, Tick()),  # timed out
        Step(0, Inquiry("b1")),  # repeat entry: a1
        Step(0, Inquiry("b2")),  # a1
        Step(1000, BuyerSays("b1")),
        Step(0, BuyerSays("b2")),
        Step(31000, Tick()),  # both unanswered 30 s, a2 offline: stranded
        Step(0, Status("a1", "offline")),  # both close: b1's contact with a1 is forgotten too,
        Step(0, Status("a1", "online")),  # and b2, left with none, at once
        Step(0, Inquiry("b1")),  # routed, not back to a1 by repeat entry
    ),
)

MOVE_IN_GREY_TEST = Case(  # contract §3.7: random steps rarely move a buyer in a grey test
    shop={
        "id": SHOP,
        "replies": {"reassign_after": 30},
        "experiment": {
            "name": "grey",
            "arms": {"control": "average", "treatment": "average"},  # not the shop's mode
            "split": {"control": 50, "treatment": 50},
        },
        "agents": [{"id": "a1"}, {"id": "a2"}],
        "groups": [{"name": "g", "agents": ["a1", "a2"]}],
    },
    steps=(
        Step(0, Status("a1", "online")),
        Step(0, Status("a2", "online")),
        Step(0, Inquiry("b1")),  # a1, by average
        Step(1000, BuyerSays("b1")),
        Step(0, ToDeadline()),  # unanswered 30 s: moved to a2, by the arm's average
    ),
)


@PROPERTY
@example(BUSY_BEFORE_LOAD)
@example(OVERDUE_IS_BUSY)
@example(REPEAT_ENTRY_FALLBACK)
@example(MOVE_BEFORE_LINE)
@example(MOVES_FREE_SLOTS)
@example(STRANDED_CLOSES)
@example(MOVE_IN_GREY_TEST)
@given(cases())
def test_the_outputs_keep_every_invariant_of_the_contract(case: Case) -> None:
    """One engine run per case, judged by every check of `tests/engine_checks.py` at once (a
    failure names its check in brackets), then a second run for determinism:

    - one_agent: an inquiry is never assigned to two agents.
    - caps: caps hold except repeat entry to the previous agent and named transfers. The cap
      is the agent's, else its group's, else `queue.default_cap`, for the group the
      assignment names, and only where queueing applies to that group.
    - order: no queued buyer is overtaken in its queue. A dequeue takes the head of its line
      (higher effective priority, the priority aged by the wait since arrival, then earlier
      arrival; overflow keeps the arrival); positions agree with that order; a routed buyer
      passes nobody of equal or higher effective priority waiting in its candidate.
    - matching: assignments go to a member of the matched candidate.
    - selection: average and efficiency modes pick the agent the contract ranks first.
      average: fewest assignments this shift, then longest since the last; efficiency: not
      busy, lowest load / weight, then longest since the last assignment.
    - fields: assignments carry the mode, group and wait the contract describes.
    - precedence: inquiries follow the rule order repeat entry, sticky, then matching. For a
      buyer with no session and no queue entry: repeat entry (previous agent if online, else
      the previous group respecting caps, else its queue), then sticky, then the matched
      candidate, else its queue.
    - online: suspended and offline agents receive no new buyer, and an agent that goes
      offline keeps no session.
    - fates: every accepted inquiry ends assigned, queued, left or expired. Including: a
      buyer in a session gets `active_session`, a queued buyer's new inquiry joins its entry
      (one `waiting` update), and nothing happens after a final state.
    - rejections: invalid events are rejected without outputs and duplicates ignored.
    - stuck: no buyer waits while an agent of its candidate is eligible.
    - timing: sessions time out and queued buyers expire at their deadlines.
    - updates: a changed queue position is published within `update_interval`.
    - ids: output ids are never reused, and a move's session is the old inquiry id with
      `~u1`; and deterministic: a second run gives the same outputs.
    - moves (`[replies] reassign_after`, contract §3.6): a session closes `unanswered` only
      when its first buyer message has gone unanswered that long (no agent message in the
      session), never one opened by a move, and the same step's next output moves the
      buyer to another agent of the same candidate (the mode and the cap checked as for
      a routed buyer, the silent agent left out): never dropped, never queued for it.
    - stranded: a buyer due to move waits only while no other agent of its candidate is
      eligible, and moves before that candidate's line is served; the engine keeps exactly
      those buyers to move.
    - way_back: sticky and repeat entry do not lead back to the agent who left the buyer
      unanswered, for `sticky_window`; the engine's last contacts are the outputs' (never
      the silent agent's, unless answered since).
    - memory: the engine remembers the buyers queued, in a session or with a recent
      contact, and none without any.
    - arms (grey tests, contract §3.7): assignments and queue updates carry the experiment
      and the buyer's arm (`Experiment.arm_of`) exactly while the shop runs one; a mode picks
      by the arm's policy (control's after a guardrail stop; checked under fields and
      selection); per arm the engine counts the outputs' buyers, sessions, waits and the
      messages' replies and replies in time, and no more converted than sessions.
    """
    first = observe(case, *CHECKS).outputs
    assert observe(case).outputs == first


@PROPERTY
@given(cases())
def test_handle_fires_due_timers_before_the_event(case: Case) -> None:
    """`handle(e, now)` gives what `on_timer(now)` then `handle(e, now)` give together."""
    config = case.config
    split, joined = Driver(config, fire_first=True), Driver(config, fire_first=False)
    for step in case.steps:
        a, b = split.run(step), joined.run(step)
        assert (a.outputs, a.rejected) == (b.outputs, b.rejected), step


@PROPERTY
@given(cases(), st.data())
def test_snapshot_restore_continues_exactly_like_the_uninterrupted_run(
    case: Case, data: st.DataObject
) -> None:
    """Snapshots go through orjson; restoring one and snapshotting again gives it back."""
    n = len(case.steps)
    restarts = data.draw(st.sets(st.integers(0, n), max_size=3), label="restart before steps")
    fire_first = data.draw(st.booleans(), label="fire_first")
    config = case.config
    straight = Driver(config, fire_first=fire_first)
    restarted = Driver(config, fire_first=fire_first)
    for i, step in enumerate([*case.steps, None]):
        if i in restarts:
            taken = restarted.snapshot()
            restarted.restart()
            assert restarted.snapshot() == taken, f"restore is not a fixed point before step {i}"
        if step is None:
            break
        a, b = straight.run(step), restarted.run(step)
        assert (b.outputs, b.rejected) == (a.outputs, a.rejected), f"step {i}: {step}"
    assert restarted.engine.next_deadline() == straight.engine.next_deadline()
    assert restarted.snapshot() == straight.snapshot()


@PROPERTY
@given(cases(), st.data())
def test_checkpoint_deltas_rebuild_the_shop_and_continue_exactly(
    case: Case, data: st.DataObject
) -> None:
    """Deltas taken after every step and applied to a stored image (through JSON, rows in
    any order, as Redis hashes give them) always equal a full snapshot; a shop restored
    from that image continues exactly like the uninterrupted run. `apply_delta` is the
    store's own definition (`delta_ops`, `stored_snapshot`; tests/integration/test_store_deltas.py
    holds Redis to it)."""
    n = len(case.steps)
    restarts = data.draw(st.sets(st.integers(0, n), max_size=3), label="restart before steps")
    straight = Driver(case.config)
    tracked = Driver(case.config, track=True)
    image: dict[str, Any] = {}
    for i, step in enumerate([*case.steps, None]):
        for delta in tracked.engine.take_deltas().values():
            stored = ShopDelta(**orjson.loads(orjson.dumps(delta)))
            apply_delta(image, stored, dedup_capacity=DEFAULT_DEDUP_CAPACITY)
        if image:
            full = {**tracked.snapshot()[SHOP], "now": image["now"]}
            assert image == full, f"delta image differs before step {i}"
        if i in restarts and image:
            shuffled = {**image, "buyers": dict(reversed(image["buyers"].items()))}
            tracked.restart_from(shuffled)
        if step is None:
            break
        a, b = straight.run(step), tracked.run(step)
        assert (b.outputs, b.rejected) == (a.outputs, a.rejected), f"step {i}: {step}"
