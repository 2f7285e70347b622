"""The policy lab learns replies (issue 26, item 4; contract §3.6): the buyers' law of waiting
for a reply, the world where some first messages go unanswered, buyers moved to another
agent while in session, and the reply figures of `fenliu simulate`."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon.cli import main
from daemon.config import load_shop_file
from daemon.core.config import ShopConfig
from daemon.core.engine import Engine, EventRejected
from daemon.lab.measures import measure
from daemon.lab.policy import parse_policy
from daemon.lab.runner import SimRun, simulate
from daemon.lab.scenarios import find_scenario
from daemon.lab.trace import AgentRecord, InquiryRecord, Trace
from daemon.lab.world import (
    INTENT_MEAN,
    REPLY_GRACE_S,
    REPLY_PATIENCE_S,
    REPLY_SIGMA,
    ignores_first,
    moved_reply_factor,
    new_agents,
    order_chance,
    reply_survival,
)
from topics.events import (
    Assignment,
    AssignReason,
    InputEvent,
    MessageSent,
    OutputEvent,
    SessionClosed,
    SessionTransferred,
)

SHOPS = Path(__file__).resolve().parents[2] / "config" / "shops"
S = 1000  # ms
MIN = 60 * S
GRACE = round(REPLY_GRACE_S * S)


@pytest.fixture(scope="module")
def big() -> ShopConfig:
    return load_shop_file(SHOPS / "big.toml")


def run(shop: ShopConfig, policy: str = "efficiency", **kw: Any) -> SimRun:
    kw.setdefault("seed", 5)
    kw.setdefault("scale", 0.25)
    kw.setdefault("history", "none")
    return simulate(shop, "steady", policy=parse_policy(policy), **kw)


def messaged(trace: Trace) -> list[InquiryRecord]:
    """The inquiries whose buyer wrote at least once in session."""
    return [r for r in trace.inquiries if r.replies_ms or r.unanswered_ms is not None]


# ----------------------------------------------------------------------------- the law


def test_a_reply_within_the_grace_costs_nothing_and_a_later_one_ever_more() -> None:
    assert reply_survival([]) == 1.0
    assert reply_survival([0, 30 * S, GRACE]) == 1.0  # the calibration of fast replies
    waits = [GRACE, GRACE + 1, 4 * MIN, 6 * MIN, 10 * MIN, 60 * MIN]
    chances = [reply_survival([w]) for w in waits]
    assert all(a > b for a, b in itertools.pairwise(chances))
    assert reply_survival([4 * MIN]) == pytest.approx(math.exp(-60 / REPLY_PATIENCE_S))
    # the buyer spends one patience over all its waits: the chances multiply
    assert reply_survival([4 * MIN, 5 * MIN]) == pytest.approx(
        reply_survival([4 * MIN]) * reply_survival([5 * MIN])
    )
    assert order_chance(0.2, INTENT_MEAN) == pytest.approx(0.2)  # unchanged


def test_expected_conversion_counts_the_buyers_who_waited_too_long() -> None:
    served: dict[str, Any] = {"arrived": 0, "served_at": S, "agent_id": "a1", "intent": INTENT_MEAN}
    trace = Trace(
        "efficiency", "hand", 1, 0, 3_600_000, {},
        inquiries=[
            InquiryRecord("fast", "b1", group="g", replies_ms=[20 * S, GRACE], **served),
            InquiryRecord("slow", "b2", group="g", replies_ms=[20 * S, 5 * MIN], **served),
            InquiryRecord("never", "b3", group="g", unanswered_ms=10 * MIN, **served),
        ],
        agents={"a1": AgentRecord("a1", ["g"], 0.3, [(0, 3_600_000)])},
    )  # fmt: skip
    chances = [0.3, 0.3 * reply_survival([5 * MIN]), 0.3 * reply_survival([10 * MIN])]
    expected = measure(trace)["conversion"]["expected_rate"]
    assert expected == pytest.approx(sum(chances) / 3)


# ------------------------------------------------------------------------- the figures


def test_reply_figures_on_a_hand_made_trace() -> None:
    """Waits for replies: answered within and past a 2-minute deadline, owed past it, owed
    for less when the session ended (left out of the share); moves by reason."""
    served: dict[str, Any] = {"arrived": 0, "served_at": S, "agent_id": "a2", "group": "g"}
    inquiries = [
        InquiryRecord("i1", "b1", replies_ms=[10 * S, 130 * S, 20 * S], **served),
        InquiryRecord("i2", "b2", replies_ms=[150 * S], unanswered_ms=30 * S, **served),
        InquiryRecord(
            "i3", "b3", replies_ms=[125 * S, 40 * S], ignored=True,
            moves=[(101 * S, "a1", "a2", "unanswered")], **served,
        ),
        InquiryRecord(
            "i4", "b4", unanswered_ms=400 * S, ignored=True, gave_up_at=300 * S, **served
        ),
        InquiryRecord("i5", "b5", unanswered_ms=60 * S, **served),  # first owed, not late yet
        InquiryRecord("i6", "b6", moves=[(9 * S, "a1", "a2", "transfer")], **served),
        InquiryRecord("i7", "b7", 0, "g", left_at=S, replies_ms=[500 * S]),  # not served
    ]  # fmt: skip
    trace = Trace("efficiency", "hand", 1, 0, 3_600_000, {}, 120_000, inquiries=inquiries)
    m = measure(trace)
    replies = m["replies"]
    # answered: 10 130 20 150 125 40 (s); within 120 s: 10 20 40; owed past it: i4
    assert replies == {
        "deadline_s": 120.0,
        "answered": 6,
        "unanswered": 3,
        "late_unanswered": 1,
        "within_deadline": 3,
        "share_within": 3 / 7,
        "p50_s": 40.0,
        "p95_s": 150.0,
        "max_s": 150.0,
        "first": {
            "answered": 3,  # 10 150 125
            "unanswered": 2,  # i4 (late), i5 (not yet)
            "late_unanswered": 1,
            "within_deadline": 1,
            "share_within": 1 / 4,
            "p50_s": 125.0,
            "p95_s": 150.0,
            "max_s": 150.0,
        },
        "gave_up": 1,
        "reassigned": 1,
        "moves": {"transfer": 1, "unanswered": 1},
    }
    head = m["headline"]
    assert head["reply_share_within"] == 3 / 7 and head["reply_p95_s"] == 150.0
    assert head["first_reply_share_within"] == 1 / 4 and head["first_reply_p95_s"] == 150.0
    assert head["reassigned"] == 1


def test_no_reply_no_figure() -> None:
    m = measure(Trace("efficiency", "hand", 1, 0, 1, {}))
    assert m["replies"]["share_within"] is None and m["replies"]["p95_s"] is None
    assert m["headline"]["first_reply_p95_s"] is None and m["headline"]["reassigned"] == 0


# ------------------------------------------------------------------------- the world


def test_the_default_world_answers_every_message(big: ShopConfig) -> None:
    trace = run(big).trace
    assert trace.ignored_first == 0.0 and trace.deadline_ms == 180_000
    wrote = messaged(trace)
    assert len(wrote) > 300
    assert not any(r.ignored or r.moves for r in trace.inquiries)
    assert sum(len(r.replies_ms) for r in wrote) > len(wrote)  # chats of several rounds
    assert all(w > 0 for r in wrote for w in r.replies_ms)
    head = measure(trace)["headline"]
    assert head["reply_share_within"] > 0.97 and head["reassigned"] == 0


def test_ignored_first_messages_are_seeded_and_the_same_under_every_policy(
    big: ShopConfig,
) -> None:
    runs = {p: run(big, p, ignored_first=0.1).trace for p in ("efficiency", "conversion:high")}
    for trace in runs.values():
        assert trace.ignored_first == 0.1
        wrote = messaged(trace)
        ignored = [r for r in wrote if r.ignored]
        assert [r.inquiry_id for r in ignored] == [
            r.inquiry_id for r in wrote if ignores_first(5, r.inquiry_id, 0.1)
        ]
        assert 0.05 * len(wrote) < len(ignored) < 0.15 * len(wrote)
        # nobody moves them (the core does not reassign yet): never answered, no order
        assert all(not r.replies_ms and r.unanswered_ms for r in ignored)
        assert not any(r.ordered for r in ignored)
    first, again = run(big, ignored_first=0.1).trace, runs["efficiency"]
    assert first.to_json() == again.to_json()
    ids = [{r.inquiry_id for r in messaged(t) if r.ignored} for t in runs.values()]
    both = {r.inquiry_id for r in messaged(runs["efficiency"])} & {
        r.inquiry_id for r in messaged(runs["conversion:high"])
    }
    assert ids[0] & both == ids[1] & both and ids[0] & both


def test_a_buyer_who_waits_past_its_patience_leaves_and_orders_nothing(
    big: ShopConfig,
) -> None:
    trace = run(big, ignored_first=0.2, scale=0.5).trace
    ignored = [r for r in messaged(trace) if r.ignored]
    gone = [r for r in trace.inquiries if r.gave_up_at is not None]
    assert gone and not any(r.ordered for r in gone)
    assert all(r.served_at is not None for r in gone)
    # every wait within the grace: nobody leaves; past it most do within the session
    patient = [r for r in trace.inquiries if max(r.reply_waits_ms, default=0) <= GRACE]
    assert not any(r.gave_up_at for r in patient)
    for r in gone:
        assert r.served_at is not None and r.gave_up_at is not None
        assert r.gave_up_at >= r.served_at + GRACE
    assert sum(r.gave_up_at is not None for r in ignored) > 0.8 * len(ignored)
    m = measure(trace)
    assert m["replies"]["gave_up"] == len(gone)
    assert m["replies"]["first"]["late_unanswered"] >= len(ignored) * 0.9
    assert m["headline"]["first_reply_share_within"] < 0.9


def test_ignored_first_outside_a_share_is_refused(big: ShopConfig) -> None:
    for share in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="ignored_first"):
            run(big, ignored_first=share)


# ----------------------------------------------------------------------------- moves


AFTER_MS = 60 * S


class Reassigning:
    """The engine, with the test moving buyers by `transfer` events after 60 s (not the
    core's own `reassign_after`, so that the lab is checked to follow any move): a buyer
    whose first message in session has waited a minute is handed to the group it was
    assigned in (its mode picks among the other agents). `reverse` returns each move's
    outputs in the other order (assignment before the old session's close)."""

    def __init__(self, shops: Any, *, reverse: bool) -> None:
        self.engine = Engine(shops)
        self.reverse = reverse
        self.fresh: dict[str, tuple[str, str | None]] = {}  # in session, not written yet
        self.owed: dict[str, tuple[int, str, str | None]] = {}  # first message unanswered
        self.n = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def handle(self, event: InputEvent, now: int) -> list[OutputEvent]:
        try:
            out = self.engine.handle(event, now)
        except EventRejected as rejected:
            self.watch(rejected.outputs)
            raise
        if isinstance(event, MessageSent):
            if event.sender == "buyer" and event.buyer_id in self.fresh:
                self.owed[event.buyer_id] = (now, *self.fresh.pop(event.buyer_id))
            elif event.sender == "agent":
                self.owed.pop(event.buyer_id, None)
        return self.watch(out)

    def watch(self, out: list[OutputEvent]) -> list[OutputEvent]:
        for o in out:
            if isinstance(o, Assignment) and o.reason not in (
                AssignReason.ACTIVE_SESSION,
                AssignReason.TRANSFER,
            ):
                self.fresh[o.buyer_id] = (o.shop_id, o.group)
            elif isinstance(o, SessionClosed) and o.reason.value != "transferred":
                self.fresh.pop(o.buyer_id, None)
                self.owed.pop(o.buyer_id, None)
        return out

    def next_deadline(self) -> int | None:
        due = [at + AFTER_MS for at, _, _ in self.owed.values()]
        engine = self.engine.next_deadline()
        return min([*due, *([] if engine is None else [engine])], default=None)

    def on_timer(self, now: int) -> list[OutputEvent]:
        out = self.watch(self.engine.on_timer(now))
        for buyer, (at, shop_id, group) in list(self.owed.items()):
            if at + AFTER_MS > now:
                continue
            del self.owed[buyer]
            if group is None:
                continue
            self.n += 1
            event = SessionTransferred(f"tr{self.n}", shop_id, now, buyer, to_group=group)
            try:
                moved = self.watch(self.engine.handle(event, now))
            except EventRejected:  # nobody free in the group: the buyer stays
                continue
            out += reversed(moved) if self.reverse else moved
        return out


@pytest.mark.parametrize("reverse", [False, True], ids=["close-first", "assignment-first"])
def test_a_buyer_moved_to_another_agent_is_answered_there(big: ShopConfig, reverse: bool) -> None:
    def make(shops: Any) -> Engine:
        return Reassigning(shops, reverse=reverse)  # type: ignore[return-value]

    trace = run(big, ignored_first=0.2, make_engine=make).trace
    moved = [r for r in trace.inquiries if r.moves]
    assert len(moved) > 20
    for r in moved:
        _, old, new, reason = r.moves[-1]
        assert reason == "transfer" and old != new and r.agent_id == new
        assert r.replies_ms and r.replies_ms[0] >= AFTER_MS  # the new agent answered
    ignored = [r for r in moved if r.ignored]
    assert ignored and all(r.replies_ms for r in ignored)
    assert any(len(r.replies_ms) > 1 for r in ignored)  # and the chat went on
    assert any(r.ordered for r in moved)
    replies = measure(trace)["replies"]
    assert replies["moves"] == {"transfer": sum(len(r.moves) for r in moved)}
    assert replies["reassigned"] == 0  # counted for reason `unanswered` only
    if reverse:  # whichever of the close and the assignment comes first, the same run

        def make_forward(shops: Any) -> Engine:
            return Reassigning(shops, reverse=False)  # type: ignore[return-value]

        forward = run(big, ignored_first=0.2, make_engine=make_forward).trace
        assert forward.to_json() == trace.to_json()


class BackAndForth:
    """The engine, with the test moving every buyer away from its agent a second after its
    first message in session (a transfer to its group) and back to that agent a second
    later: the agent's reply from before the moves must not be sent as well."""

    def __init__(self, shops: Any) -> None:
        self.engine = Engine(shops)
        self.fresh: dict[str, tuple[str, str, str | None]] = {}  # not written yet
        self.due: list[tuple[int, str, str, str, str | None]] = []  # (at, buyer, shop, ...)
        self.senders: dict[str, list[str]] = {}  # buyer -> who wrote, in order
        self.back = 0  # buyers moved back to their first agent
        self.n = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def handle(self, event: InputEvent, now: int) -> list[OutputEvent]:
        out = self.engine.handle(event, now)
        if isinstance(event, MessageSent):
            self.senders.setdefault(event.buyer_id, []).append(event.sender)
            if event.sender == "buyer" and event.buyer_id in self.fresh:
                shop_id, agent_id, group = self.fresh.pop(event.buyer_id)
                self.due.append((now + S, event.buyer_id, shop_id, "away", group))
                self.due.append((now + 2 * S, event.buyer_id, shop_id, "back", agent_id))
        return self.watch(out)

    def watch(self, out: list[OutputEvent]) -> list[OutputEvent]:
        for o in out:
            if isinstance(o, Assignment) and o.reason not in (
                AssignReason.ACTIVE_SESSION,
                AssignReason.TRANSFER,
            ):
                self.fresh[o.buyer_id] = (o.shop_id, o.agent_id, o.group)
        return out

    def next_deadline(self) -> int | None:
        engine = self.engine.next_deadline()
        return min([at for at, *_ in self.due] + ([] if engine is None else [engine]), default=None)

    def on_timer(self, now: int) -> list[OutputEvent]:
        out = self.watch(self.engine.on_timer(now))
        due = sorted(d for d in self.due if d[0] <= now)
        self.due = [d for d in self.due if d[0] > now]
        for _, buyer, shop_id, step, target in due:
            self.n += 1
            event = (
                SessionTransferred(f"tr{self.n}", shop_id, now, buyer, to_group=target)
                if step == "away"
                else SessionTransferred(f"tr{self.n}", shop_id, now, buyer, to_agent=target)
            )
            try:
                out += self.watch(self.engine.handle(event, now))
            except EventRejected:  # nobody free, or the buyer's session ended: it stays
                continue
            self.back += step == "back"
        return out


def test_a_chat_moved_back_to_its_agent_gets_one_reply_per_message(big: ShopConfig) -> None:
    """A reply the agent was about to send belongs to its session: when the chat comes back
    to the agent by another session, the agent answers once (the lab's bug: both replies
    came, the chat ran past its rounds and the lab indexed past its reply paces)."""
    engines: list[BackAndForth] = []

    def make(shops: Any) -> Engine:
        engines.append(BackAndForth(shops))
        return engines[-1]  # type: ignore[return-value]

    trace = run(big, make_engine=make).trace
    engine = engines[0]
    assert engine.back > 50
    for senders in engine.senders.values():
        assert "agent agent" not in " ".join(senders)  # every agent message answers one
    moved = [r for r in trace.inquiries if len(r.moves) == 2]
    assert len(moved) == engine.back
    assert all(r.replies_ms and r.replies_ms[0] >= 2 * S for r in moved)


def test_a_moved_question_is_answered_with_a_draw_of_its_own() -> None:
    """The agent a buyer moves to answers the question at its own pace: a lognormal factor
    (median 1) of its own, the same for the same move under every policy, not the visit's
    draw for the round (the first agent's, long when the buyer moved for no reply)."""
    draws = [moved_reply_factor(1, f"b{k:06d}.0~u1") for k in range(2001)]
    assert moved_reply_factor(1, "b000007.0~u1") == draws[7]  # seeded: every policy alike
    assert moved_reply_factor(2, "b000007.0~u1") != draws[7]
    assert moved_reply_factor(1, "b000007.0~u2") != draws[7]  # each move its own
    logs = sorted(math.log(d) for d in draws)
    assert abs(logs[1000]) < 0.06  # median 1
    spread = (logs[1682] - logs[318]) / 2  # ±1 sigma
    assert spread == pytest.approx(REPLY_SIGMA, rel=0.1)


def test_a_buyer_the_core_moves_is_answered_at_the_new_agents_pace(big: ShopConfig) -> None:
    """With `[replies] reassign_after` the core moves buyers left unanswered; the new agent
    answers after its median × the move's own factor × its load (1 + 0.1 per open session
    beyond the first): a buyer moved on time has waited `reassign_after` before that."""
    after = 60 * S
    shop = big.model_copy(
        update={"replies": big.replies.model_copy(update={"reassign_after": after})}
    )
    sim = run(shop, ignored_first=0.2)
    medians = {a.id: a.reply_median_ms for a in new_agents(sim.config, find_scenario("steady"), 5)}
    moved = [r for r in sim.trace.inquiries if r.moves and r.replies_ms]
    assert len(moved) > 20 and all(r.moves[0][3] == "unanswered" for r in moved)
    at_pace = 0
    for r in moved:
        agent_id = r.moves[0][2]
        pace = medians[agent_id] * moved_reply_factor(5, f"{r.inquiry_id}~u1")
        load = (r.replies_ms[0] - after) / pace  # on time: 1.0, 1.1, 1.2, ...
        at_pace += 1.0 <= load < 2.0 and abs(load * 10 - round(load * 10)) < 0.01
    assert at_pace > 0.6 * len(moved)  # the others waited longer for someone to take them


# ------------------------------------------------------------------------- the command


def test_simulate_reports_replies_and_the_ignored_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "replies.json"
    code = main(
        ["simulate", "--shop", str(SHOPS / "big.toml"), "--scenario", "steady", "--scale",
         "0.1", "--mode", "efficiency", "--ignored-first", "0.05", "--json", str(out)]
    )  # fmt: skip
    assert code == 0
    printed = " ".join(capsys.readouterr().out.split())  # the title may wrap
    assert "5% of first messages ignored" in printed
    for label in ("replies within deadline", "first reply p95 (s)", "reassigned (unanswered)"):
        assert label in printed
    doc = orjson.loads(out.read_bytes())
    assert doc["ignored_first"] == 0.05
    head = doc["policies"]["efficiency"]["measures"]["headline"]
    assert {"reply_share_within", "reply_p95_s", "first_reply_share_within"} <= set(head)
    assert "first_reply_p95_s" in doc["headline_keys"] and "reassigned" in doc["headline_keys"]


@pytest.mark.parametrize("share", ["-0.1", "1.01", "half"])
def test_simulate_refuses_an_ignored_share_out_of_range(
    share: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["simulate", "--shop", "x.toml", "--scenario", "steady", "--ignored-first", share])
    assert exit_.value.code == 2
    assert "is not a share from 0 to 1" in capsys.readouterr().err
