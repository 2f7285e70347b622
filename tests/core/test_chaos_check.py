"""The chaos checker (tests/chaos_check.py) on small hand-made streams: a clean one passes,
and each kind of violation is found. One shop, one group of two agents with cap 1,
session_timeout 3 s, max_wait 8 s; times are ms after T."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from daemon.core.config import AgentConfig, GroupConfig, QueueConfig, ShopConfig
from tests.chaos_check import KINDS, Event, Verdict, check, open_state

T = 1_700_000_000_000
SHOP = ShopConfig(
    id="s",
    queue=QueueConfig(enabled=True, default_cap=1, session_timeout="3s", max_wait="8s"),
    agents=(AgentConfig(id="a1"), AgentConfig(id="a2")),
    groups=(GroupConfig(name="g", agents=("a1", "a2")),),
)


def ev(type_: str, id_: str, at: int, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "id": id_, "shop_id": "s", "ts": T + at, **fields}


def inquiry(id_: str, buyer: str, at: int, priority: int = 0) -> dict[str, Any]:
    return ev("inquiry", id_, at, buyer_id=buyer, priority=priority)


def online(agent: str, at: int = 0, status: str = "online") -> dict[str, Any]:
    return ev("agent_status", f"st-{agent}-{at}", at, agent_id=agent, status=status)


def message(buyer: str, at: int, sender: str = "agent") -> dict[str, Any]:
    extra = {"agent_id": "a1"} if sender == "agent" else {}
    return ev("message", f"m-{buyer}-{at}", at, buyer_id=buyer, **{"from": sender}, **extra)


def asg(inq: str, buyer: str, agent: str, at: int, reason: str = "routed") -> dict[str, Any]:
    mode = "efficiency" if reason in ("routed", "dequeued") else None
    return ev("assignment", f"asg:{inq}", at, inquiry_id=inq, buyer_id=buyer, agent_id=agent,
              group="g", reason=reason, mode=mode, waited_ms=0)  # fmt: skip


def closed(inq: str, buyer: str, agent: str, at: int, reason: str = "timeout") -> dict[str, Any]:
    return ev("session_closed", f"end:{inq}", at, buyer_id=buyer, agent_id=agent, reason=reason)


def q(inq: str, buyer: str, n: int, status: str, at: int) -> dict[str, Any]:
    told = status in ("queued", "waiting")
    return ev("queue_update", f"q:{inq}:{n}", at, inquiry_id=inq, buyer_id=buyer, group="g",
              status=status, position=1 if told else None,
              estimated_wait_s=3 if told else None)  # fmt: skip


# A clean run: b1 and b2 served at once, b3 queues and is dequeued when b1's session ends,
# b4 queues and leaves, b5 queues and expires, b2 inquires again in its session
# (active_session), b3 inquires again while queued (joins its entry), b1 comes back and
# gets its previous agent by repeat entry above cap. One output is published twice.
INPUTS: list[Event] = [
    online("a1"),
    online("a2"),
    inquiry("i1", "b1", 100),
    inquiry("i2", "b2", 200),
    inquiry("i3", "b3", 300),
    inquiry("i4", "b4", 400),
    inquiry("i5", "b5", 500),
    ev("leave", "l4", 600, buyer_id="b4"),
    inquiry("i2b", "b2", 700),
    inquiry("i3b", "b3", 800),
    inquiry("i6", "b1", 3400),
    message("b2", 2000),
]
OUTPUTS: list[Event] = [
    asg("i1", "b1", "a1", 110),
    asg("i2", "b2", "a2", 210),
    asg("i2b", "b2", "a2", 710, reason="active_session"),
    closed("i1", "b1", "a1", 3110),
    asg("i3", "b3", "a1", 3110, reason="dequeued"),
    asg("i6", "b1", "a1", 3410, reason="repeat_entry"),  # a1 at 2 > cap 1: allowed
    closed("i2", "b2", "a2", 5000),
    closed("i3", "b3", "a1", 6110),
    closed("i6", "b1", "a1", 6410),
    q("i3", "b3", 1, "queued", 310),
    q("i4", "b4", 1, "queued", 410),
    q("i5", "b5", 1, "queued", 510),
    q("i4", "b4", 2, "left", 610),
    q("i3", "b3", 2, "waiting", 810),
    q("i3", "b3", 3, "dequeued", 3110),
    q("i5", "b5", 2, "expired", 8510),
    asg("i1", "b1", "a1", 110),  # republished after a restart: same id, same contents
]
END = 12_000


def judge(inputs: Sequence[Event], outputs: Sequence[Event], end: int = END) -> Verdict:
    """Check; the outputs are put in topic order (by ts: decisions here never share one)."""
    ordered = sorted(outputs, key=lambda o: o["ts"])
    return check(inputs, ordered, {"s": SHOP}, end_ms=T + end)


def only(verdict: Verdict, kind: str) -> list[str]:
    """The examples of `kind`, after checking that no other kind was reported."""
    others = {k: v for k, v in verdict.violations.items() if v and k != kind}
    assert not others, others
    assert verdict.violations[kind], f"no {kind} found:\n{verdict.report()}"
    return verdict.violations[kind]


def test_a_clean_stream_passes_with_its_figures() -> None:
    verdict = judge(INPUTS, OUTPUTS)
    assert verdict.clean, verdict.report()
    figures = verdict.figures
    assert (figures["inquiries"], figures["duplicates"], figures["assignments"]) == (8, 1, 4)
    assert (figures["queued"], figures["left"], figures["expired"]) == (3, 1, 1)
    assert (figures["sessions_open_at_end"], figures["queued_at_end"]) == (0, 0)
    assert open_state(OUTPUTS) == (0, 0)
    assert set(verdict.counts()) == set(KINDS)


def test_an_inquiry_no_output_names_is_lost() -> None:
    found = only(judge([*INPUTS, inquiry("i7", "b7", 900)], OUTPUTS), "lost")
    assert "i7" in found[0]


def test_an_inquiry_after_its_buyer_left_the_queue_does_not_join_it() -> None:
    found = only(judge([*INPUTS, inquiry("i4b", "b4", 700)], OUTPUTS), "lost")
    assert "i4b" in found[0]


def test_a_dequeued_buyer_never_assigned_is_lost() -> None:
    outputs = [o for o in OUTPUTS if o["id"] not in ("asg:i3", "end:i3")]
    assert "dequeued" in only(judge(INPUTS, outputs), "lost")[0]


def test_a_buyer_still_queued_past_max_wait_is_lost() -> None:
    outputs = [o for o in OUTPUTS if o["id"] != "q:i5:2"]
    assert "max_wait" in only(judge(INPUTS, outputs), "lost")[0]


def test_a_buyer_still_queued_while_an_agent_had_capacity_is_lost() -> None:
    outputs = [o for o in OUTPUTS if o["id"] != "q:i5:2"]
    found = only(judge(INPUTS, outputs, end=8000), "lost")  # before max_wait ran out
    assert "capacity" in found[0] and "i5" in found[0]


def test_a_queued_buyer_with_every_agent_offline_is_not_lost() -> None:
    inputs = [*INPUTS, online("a1", 7000, "offline"), online("a2", 7000, "offline")]
    outputs = [o for o in OUTPUTS if o["id"] != "q:i5:2"]
    assert judge(inputs, outputs, end=8000).clean


def test_two_final_states_conflict() -> None:
    outputs = [*OUTPUTS, asg("i5", "b5", "a2", 9000, reason="dequeued"),
               closed("i5", "b5", "a2", 12_000)]  # fmt: skip
    found = only(judge(INPUTS, outputs, end=13_000), "conflicting")
    assert "i5" in found[0]


def test_an_inquiry_assigned_to_two_agents_is_double_assigned() -> None:
    outputs = [*OUTPUTS, asg("i2", "b2", "a1", 210)]
    verdict = judge(INPUTS, outputs)
    assert any("i2" in text for text in verdict.violations["double_assigned"])
    assert verdict.violations["differing_duplicates"]  # the same id, other contents


def test_a_buyer_given_a_second_agent_while_in_session_is_double_assigned() -> None:
    inputs = [*INPUTS, inquiry("i8", "b2", 1000)]
    outputs = [*OUTPUTS, asg("i8", "b2", "a1", 1010), closed("i8", "b2", "a1", 4010)]
    verdict = judge(inputs, outputs)
    assert "while its session i2 with a2 is open" in verdict.violations["double_assigned"][0]
    again = [*OUTPUTS, asg("i8", "b2", "a2", 1010), closed("i8", "b2", "a2", 4010)]
    same = judge(inputs, again)  # the same agent twice (also over cap, and overtaking i3)
    assert "i8" in same.violations["conflicting"][0] and not same.violations["double_assigned"]


def test_a_duplicate_with_other_contents_is_reported() -> None:
    republished = {**q("i4", "b4", 2, "left", 610), "ts": T + 611}
    found = only(judge(INPUTS, [*OUTPUTS, republished]), "differing_duplicates")
    assert "q:i4:2" in found[0] and "ts" in found[0]


def test_an_assignment_above_cap_is_reported() -> None:
    inputs = [*INPUTS, inquiry("i9", "b9", 250)]
    outputs = [*OUTPUTS, asg("i9", "b9", "a1", 260), closed("i9", "b9", "a1", 3260)]
    found = only(judge(inputs, outputs), "cap_exceeded")
    assert "asg:i9" in found[0]


ONLINE = [online("a1"), online("a2")]


@pytest.mark.parametrize(("agent", "allowed"), [("a1", True), ("a2", False)])
def test_repeat_entry_may_exceed_only_the_previous_agents_cap(agent: str, allowed: bool) -> None:
    inputs = [*ONLINE, inquiry("i1", "b1", 100), inquiry("i2", "b2", 200),
              inquiry("i3", "b3", 300), inquiry("i4", "b1", 4000)]  # fmt: skip
    outputs = [
        asg("i1", "b1", "a1", 100), asg("i2", "b2", "a2", 200),
        closed("i1", "b1", "a1", 3100), q("i3", "b3", 1, "queued", 300),
        q("i3", "b3", 2, "dequeued", 3100), asg("i3", "b3", "a1", 3100, "dequeued"),
        asg("i4", "b1", agent, 4000, "repeat_entry"), closed("i2", "b2", "a2", 5200),
        closed("i3", "b3", "a1", 6100), closed("i4", "b1", agent, 7000),
    ]  # fmt: skip
    verdict = judge(inputs, outputs)
    if allowed:
        assert verdict.clean, verdict.report()
    else:
        assert "asg:i4" in only(verdict, "cap_exceeded")[0]


@pytest.mark.parametrize(("target", "allowed"), [({"to_agent": "a1"}, True),
                                                 ({"to_group": "g"}, False)])  # fmt: skip
def test_only_a_transfer_to_a_named_agent_may_exceed_its_cap(
    target: dict[str, str], allowed: bool
) -> None:
    inputs = [*ONLINE, inquiry("i1", "b1", 100), inquiry("i2", "b2", 200),
              ev("transfer", "t1", 1000, buyer_id="b2", **target)]  # fmt: skip
    outputs = [
        asg("i1", "b1", "a1", 100), asg("i2", "b2", "a2", 200),
        closed("i2", "b2", "a2", 1000, "transferred"), asg("t1", "b2", "a1", 1001, "transfer"),
        closed("i1", "b1", "a1", 3100), closed("t1", "b2", "a1", 4000),
    ]  # fmt: skip
    verdict = judge(inputs, outputs)
    if allowed:
        assert verdict.clean, verdict.report()
    else:
        assert "asg:t1" in only(verdict, "cap_exceeded")[0]


@pytest.mark.parametrize(("priority", "allowed"), [(0, False), (1, True)])
def test_a_later_entrant_dequeued_first_breaks_queue_order(priority: int, allowed: bool) -> None:
    inputs = [*ONLINE, inquiry("i1", "b1", 100), inquiry("i2", "b2", 200),
              inquiry("i3", "b3", 300), inquiry("i4", "b4", 400, priority)]  # fmt: skip
    outputs = [
        asg("i1", "b1", "a1", 100), asg("i2", "b2", "a2", 200),
        q("i3", "b3", 1, "queued", 300), q("i4", "b4", 1, "queued", 400),
        closed("i1", "b1", "a1", 3100), q("i4", "b4", 2, "dequeued", 3100),
        asg("i4", "b4", "a1", 3101, "dequeued"), closed("i2", "b2", "a2", 3200),
        q("i3", "b3", 2, "dequeued", 3200), asg("i3", "b3", "a2", 3201, "dequeued"),
        closed("i4", "b4", "a1", 6100), closed("i3", "b3", "a2", 6200),
    ]  # fmt: skip
    verdict = judge(inputs, outputs)
    if allowed:  # a higher priority goes first: that is the rule
        assert verdict.clean, verdict.report()
    else:
        assert "q:i4:2" in only(verdict, "queue_order")[0]


def test_a_routed_buyer_passing_one_who_waits_breaks_queue_order() -> None:
    inputs = [*INPUTS, inquiry("i12", "b12", 1000)]
    outputs = [*OUTPUTS, asg("i12", "b12", "a2", 1010), closed("i12", "b12", "a2", 1500)]
    verdict = judge(inputs, outputs)
    assert any("i12" in t and "waited" in t for t in verdict.violations["queue_order"])


def test_a_session_never_closed_after_the_agent_replied_is_unclosed() -> None:
    outputs = [o for o in OUTPUTS if o["id"] != "end:i2"]
    found = only(judge(INPUTS, outputs), "unclosed")
    assert "i2" in found[0]
    waiting = [*INPUTS, message("b2", 2500, sender="buyer")]  # the agent owes a reply
    assert judge(waiting, outputs).clean


def test_a_rejected_inquiry_is_not_counted_as_accepted() -> None:
    dead = ev("rejected", "dl:1", 950, error="x", source_topic="in", partition=0, offset=9,
              raw='{"type":"inquiry","id":"i13","shop_id":"s","ts":1,"buyer_id":"b"}')  # fmt: skip
    verdict = judge([*INPUTS, inquiry("i13", "b13", 900)], [*OUTPUTS, dead])
    assert verdict.clean and verdict.figures["rejected"] == 1


def test_a_rejected_inquiry_whose_dead_letter_holds_only_an_excerpt_is_not_accepted() -> None:
    cut = '{"type":"inquiry","id":"i\\"14","shop_id":"s","ts":1,"context":{"crowd":["vvv'
    dead = ev("rejected", "dl:2", 950, error="x", source_topic="in", partition=0, offset=10,
              raw=cut, raw_truncated=True, raw_size=70_000, raw_sha256="0" * 64)  # fmt: skip
    verdict = judge([*INPUTS, inquiry('i"14', "b14", 900)], [*OUTPUTS, dead])
    assert verdict.clean and verdict.figures["rejected"] == 1
