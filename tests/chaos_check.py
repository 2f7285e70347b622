"""The chaos checker: contract §6 judged from the inputs and the output topics alone (no I/O).

`check(inputs, outputs, shop_configs)` takes every input event produced (dicts, in the order
they were produced), every output record read back from the beginning of the output topics
(dicts; records of one topic and shop in topic order, any interleaving between topics), and
the shop files; it returns a `Verdict`: violations by kind, with examples, and figures.

The kinds (contract §6 and 3.1, as the outputs show them to a consumer that drops duplicate
ids, keeping the first):

    lost                  an accepted inquiry with no final state (no output names it, and it
                          did not join its buyer's queue entry; or dequeued, never assigned);
                          or still queued at the end past `max_wait` or while its group had
                          capacity (an online member below cap, per the last agent_status)
    conflicting           more than one final state (assigned and expired, queued again
                          after leaving, assigned by a reason other than `dequeued` while
                          queued, a second session with the same agent while one is open)
    double_assigned       one inquiry id with two different agents, or a buyer given a second
                          agent while its session with the first is still open (transfers
                          close the old session first, so they are not counted; the same
                          agent again counts as `conflicting`)
    differing_duplicates  the same output id published with different contents (`ts`
                          included: the contract says "same ids and contents")
    cap_exceeded          an agent's open sessions above its cap where queueing applies,
                          except by repeat entry to the buyer's previous agent or a `to_agent`
                          transfer (no reloads here, so no lowered caps)
    queue_order           within one queue, a buyer dequeued while one ahead of it (higher
                          priority, or equal priority and earlier) still waits; or a `routed`
                          assignment into a group while a buyer of equal or higher priority
                          waits in its queue (decided strictly between its queued and exit ts)
    unclosed              a session still open at the end although its timeout passed with the
                          agent having written last (state the daemon forgot)
    crashed               (added by the runner, not judged here) a daemon that exited without
                          being asked to, or a SIGTERM that did not end in exit 0 within 10 s

Timing facts come from the daemon's own `ts` (decision time) and the producer's `ts` (input
time), both wall clock on one machine: an input is decided no earlier than its `ts`.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from daemon.core.config import ShopConfig

Event = Mapping[str, Any]

KINDS = (
    "lost",
    "conflicting",
    "double_assigned",
    "differing_duplicates",
    "cap_exceeded",
    "queue_order",
    "unclosed",
    "crashed",
)
SESSION_TYPES = ("assignment", "session_closed")  # the assignments topic
EXITS = ("dequeued", "left", "expired")
FIGURES = ("assignments", "queued", *EXITS, "longest_queue", "unknown_closes")


@dataclass
class Verdict:
    """What a chaos run showed: violations (kind -> examples) and figures."""

    violations: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """No violation of any kind."""
        return not any(self.violations.values())

    def counts(self) -> dict[str, int]:
        """Violations per kind."""
        return {kind: len(found) for kind, found in self.violations.items()}

    def add(self, kind: str, example: str) -> None:
        """Record one violation."""
        self.violations[kind].append(example)

    def report(self, examples: int = 3) -> str:
        """A few lines for a person: verdict, counts with examples, then the figures."""
        lines = ["verdict: CLEAN" if self.clean else "verdict: VIOLATIONS"]
        for kind, found in self.violations.items():
            lines.append(f"  {kind:<21} {len(found)}")
            lines += [f"      e.g. {text}" for text in found[:examples]]
        lines.append("figures:")
        lines += [f"  {name:<21} {_figure(value)}" for name, value in self.figures.items()]
        return "\n".join(lines)


def _figure(value: float) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def check(
    inputs: Sequence[Event],
    outputs: Sequence[Event],
    shop_configs: Mapping[str, ShopConfig],
    *,
    end_ms: int | None = None,
    slack_ms: int = 3000,
) -> Verdict:
    """Judge a run (see the module docstring). `end_ms`: when the outputs were read (default:
    the latest ts seen); `slack_ms`: how late a timer may fire before it counts as missed."""
    verdict = Verdict()
    unique = _dedup(outputs, verdict)
    rejected = _rejected_ids(unique)
    end = end_ms if end_ms is not None else max((e["ts"] for e in [*inputs, *outputs]), default=0)
    for inquiry_id, agents in _agents_by_inquiry(outputs).items():
        if len(agents) > 1:
            verdict.add("double_assigned", f"inquiry {inquiry_id} assigned to {sorted(agents)}")
    totals: Counter[str] = Counter()
    for shop_id, config in shop_configs.items():
        shop_in = [e for e in inputs if e.get("shop_id") == shop_id and e["id"] not in rejected]
        shop_out = [e for e in unique if e.get("shop_id") == shop_id]
        judge = _ShopJudge(config, shop_in, shop_out, verdict, end, slack_ms)
        judge.run()
        totals.update(judge.figures)
    verdict.figures.update(
        {
            "inputs": len(inputs),
            "inquiries": sum(
                1 for e in inputs if e["type"] == "inquiry" and e["id"] not in rejected
            ),
            "rejected": len(rejected),
            "outputs": len(outputs),
            "unique_outputs": len(unique),
            "duplicates": len(outputs) - len(unique),
            **totals,
        }
    )
    return verdict


def open_state(outputs: Sequence[Event]) -> tuple[int, int]:
    """(sessions open, buyers queued) per the outputs so far: 0, 0 when all is settled."""
    unique = list(_first_of_each(outputs).values())
    sessions: set[str] = set()
    queued: set[str] = set()
    for e in unique:
        if e["type"] == "assignment" and e["reason"] != "active_session":
            sessions.add(e["inquiry_id"])
        elif e["type"] == "session_closed":
            sessions.discard(e["id"].removeprefix("end:"))
        elif e["type"] == "queue_update" and e["status"] == "queued":
            queued.add(e["inquiry_id"])
        elif e["type"] == "queue_update" and e["status"] in EXITS:
            queued.discard(e["inquiry_id"])
    return len(sessions), len(queued)


# --------------------------------------------------------------------------- whole-run parts


def _first_of_each(outputs: Iterable[Event]) -> dict[str, Event]:
    first: dict[str, Event] = {}
    for e in outputs:
        first.setdefault(e["id"], e)
    return first


def _dedup(outputs: Sequence[Event], verdict: Verdict) -> list[Event]:
    """The first record of every output id; a later one with other contents is reported."""
    first: dict[str, Event] = {}
    unique: list[Event] = []
    for e in outputs:
        seen = first.get(e["id"])
        if seen is None:
            first[e["id"]] = e
            unique.append(e)
        elif seen != e:
            keys = sorted(set(seen) | set(e))
            diff = ", ".join(
                f"{k}: {seen.get(k)!r} then {e.get(k)!r}" for k in keys if seen.get(k) != e.get(k)
            )
            verdict.add("differing_duplicates", f"{e['id']}: {diff}")
    return unique


def _rejected_ids(outputs: Iterable[Event]) -> set[str]:
    """Ids of the input events the dead-letter topic refused (parsed from `raw`; from the
    start of a cut one, whose excerpt is no longer JSON)."""
    ids: set[str] = set()
    for e in outputs:
        if e["type"] == "rejected" and e.get("raw_encoding", "utf-8") == "utf-8":
            if e.get("raw_truncated") is True:
                found = _FIRST_ID.search(e["raw"])
                if found is not None:
                    ids.add(orjson.loads(f'"{found.group(1)}"'))
                continue
            try:
                raw = orjson.loads(e["raw"])
            except orjson.JSONDecodeError:
                continue
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                ids.add(raw["id"])
    return ids


_FIRST_ID = re.compile(r'"id"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _agents_by_inquiry(outputs: Iterable[Event]) -> dict[str, set[str]]:
    """Every agent each inquiry was assigned to, over every record (duplicates included)."""
    found: dict[str, set[str]] = defaultdict(set)
    for e in outputs:
        if e["type"] == "assignment":
            found[f"{e['shop_id']}/{e['inquiry_id']}"].add(e["agent_id"])
    return found


# ------------------------------------------------------------------------------ one shop


@dataclass
class _Entry:
    """One stay in line, per the queue_updates topic."""

    inquiry: str
    buyer: str
    group: str | None
    priority: int
    seq: int
    queued_ts: int  # when it entered its current queue
    exit_ts: int | None = None
    status: str = "queued"


@dataclass
class _Session:
    inquiry: str
    buyer: str
    agent: str
    start_ts: int


class _ShopJudge:
    """The checks of one shop."""

    def __init__(
        self,
        config: ShopConfig,
        inputs: list[Event],
        outputs: list[Event],
        verdict: Verdict,
        end_ms: int,
        slack_ms: int,
    ) -> None:
        self.config, self.verdict, self.end, self.slack = config, verdict, end_ms, slack_ms
        self.inputs = inputs
        self.sessions_out = [e for e in outputs if e["type"] in SESSION_TYPES]
        self.queue_out = [e for e in outputs if e["type"] == "queue_update"]
        self.inquiries = [e for e in inputs if e["type"] == "inquiry"]
        self.priority = {e["id"]: int(e.get("priority") or 0) for e in self.inquiries}
        self.to_agent = {e["id"] for e in inputs if e["type"] == "transfer" and e.get("to_agent")}
        self.entries: dict[str, _Entry] = {}
        self.open: dict[str, _Session] = {}  # by inquiry id
        self.load: Counter[str] = Counter()
        self.assigned: dict[str, Event] = {}  # inquiry id -> first assignment
        self.figures: Counter[str] = Counter(dict.fromkeys(FIGURES, 0))

    def run(self) -> None:
        self.queues()
        self.sessions()
        self.fates()
        self.unclosed()
        self.figures["sessions_open_at_end"] += len(self.open)
        self.figures["queued_at_end"] += sum(1 for e in self.entries.values() if e.exit_ts is None)

    def add(self, kind: str, text: str) -> None:
        self.verdict.add(kind, f"[{self.config.id}] {text}")

    # --- the queue_updates topic

    def queues(self) -> None:
        waiting: dict[str | None, dict[str, _Entry]] = defaultdict(dict)
        seq = itertools.count()
        longest = 0
        for u in self.queue_out:
            inquiry, status = u["inquiry_id"], u["status"]
            entry = self.entries.get(inquiry)
            if status == "queued":
                if entry is not None and entry.exit_ts is None:  # overflow: keeps its place
                    del waiting[entry.group][inquiry]
                    entry.group, entry.queued_ts = u["group"], u["ts"]
                else:
                    if entry is not None:
                        self.add("conflicting", f"{u['id']} queued again after {entry.status}")
                    prio = self.priority.get(inquiry, 0)
                    entry = _Entry(inquiry, u["buyer_id"], u["group"], prio, next(seq), u["ts"])
                    self.entries[inquiry] = entry
                    self.figures["queued"] += 1
                waiting[entry.group][inquiry] = entry
                longest = max(longest, len(waiting[entry.group]))
            elif status in EXITS:
                if entry is None or entry.exit_ts is not None:
                    was = "never queued" if entry is None else entry.status
                    self.add("conflicting", f"{u['id']} {status} but it was {was}")
                    continue
                queue = waiting[entry.group]
                if status == "dequeued":
                    self.check_head(entry, queue, u)
                del queue[inquiry]
                entry.exit_ts, entry.status = u["ts"], status
                self.figures[status] += 1
        self.figures["longest_queue"] = max(self.figures["longest_queue"], longest)

    def check_head(self, entry: _Entry, queue: dict[str, _Entry], u: Event) -> None:
        ahead = [
            f.inquiry
            for f in queue.values()
            if f.priority > entry.priority or (f.priority == entry.priority and f.seq < entry.seq)
        ]
        if ahead:
            self.add(
                "queue_order",
                f"{u['id']} (buyer {entry.buyer}, priority {entry.priority}) dequeued at "
                f"{u['ts']} in {entry.group!r} ahead of {ahead[:3]} still waiting",
            )

    # --- the assignments topic

    def sessions(self) -> None:
        previous: dict[str, str] = {}  # buyer -> agent of its last ended session
        for e in self.sessions_out:
            if e["type"] == "session_closed":
                s = self.open.pop(e["id"].removeprefix("end:"), None)
                if s is None:
                    self.figures["unknown_closes"] += 1
                    continue
                self.load[s.agent] -= 1
                if e["reason"] != "transferred":
                    previous[s.buyer] = s.agent
                continue
            self.assigned.setdefault(e["inquiry_id"], e)
            buyer, agent = e["buyer_id"], e["agent_id"]
            mine = [s for s in self.open.values() if s.buyer == buyer]
            if e["reason"] == "active_session":
                others = [s for s in mine if s.agent != agent]
                if others:
                    self.add(
                        "double_assigned",
                        f"{e['id']} to {agent} but the session is "
                        f"with {others[0].agent} ({others[0].inquiry})",
                    )
                continue
            self.figures["assignments"] += 1
            if mine:
                other = next((s for s in mine if s.agent != agent), None)
                kind = "conflicting" if other is None else "double_assigned"
                s = other or mine[0]
                self.add(
                    kind,
                    f"buyer {buyer} given to {agent} ({e['id']}, {e['reason']}) "
                    f"while its session {s.inquiry} with {s.agent} is open",
                )
            self.check_cap(e, previous.get(buyer))
            if e["reason"] == "routed":
                self.check_overtaking(e)
            self.load[agent] += 1
            self.open[e["inquiry_id"]] = _Session(e["inquiry_id"], buyer, agent, e["ts"])

    def cap(self, agent: str, group: str | None) -> int | None:
        """contract §2: the agent's cap in `group`, or None where queueing does not apply."""
        q = self.config.queue
        if group is None or not q.enabled or (q.scope == "groups" and group not in q.groups):
            return None
        conf = self.config.agent(agent)
        group_conf = next((g for g in self.config.groups if g.name == group), None)
        group_cap = group_conf.cap if group_conf is not None else None
        own = conf.cap if conf is not None else None
        return own or group_cap or q.default_cap

    def check_cap(self, e: Event, previous_agent: str | None) -> None:
        agent = e["agent_id"]
        cap = self.cap(agent, e["group"])
        if cap is None or self.load[agent] + 1 <= cap:
            return
        if e["reason"] == "repeat_entry" and previous_agent == agent:
            return
        if e["reason"] == "transfer" and e["inquiry_id"] in self.to_agent:
            return
        self.add(
            "cap_exceeded",
            f"{e['id']} ({e['reason']}) takes {agent} to {self.load[agent] + 1} > cap {cap}",
        )

    def check_overtaking(self, e: Event) -> None:
        prio = self.priority.get(e["inquiry_id"], 0)
        for f in self.entries.values():
            exit_ts = f.exit_ts if f.exit_ts is not None else self.end + 1
            if f.group == e["group"] and f.priority >= prio and f.queued_ts < e["ts"] < exit_ts:
                self.add(
                    "queue_order",
                    f"{e['id']} routed to {e['agent_id']} at {e['ts']} while {f.inquiry} waited "
                    f"in {f.group!r} since {f.queued_ts}",
                )
                return

    # --- the end state

    def fates(self) -> None:
        by_buyer: dict[str, list[Event]] = defaultdict(list)
        for inquiry in self.inquiries:
            by_buyer[inquiry["buyer_id"]].append(inquiry)
            states = self.states(inquiry)
            if states is None:
                continue
            if not states:
                if self.joined(inquiry, by_buyer[inquiry["buyer_id"]][:-1]) is None:
                    self.add(
                        "lost",
                        f"inquiry {inquiry['id']} (buyer {inquiry['buyer_id']}, "
                        f"ts {inquiry['ts']}): no output names it",
                    )
                continue
            if len(states) > 1:
                self.add("conflicting", f"inquiry {inquiry['id']} ended {' and '.join(states)}")
            if states == ["queued"]:
                self.check_still_queued(self.entries[inquiry["id"]])

    def states(self, inquiry: Event) -> list[str] | None:
        """The final states the outputs give the inquiry; None once reported as lost."""
        inquiry_id = inquiry["id"]
        states: list[str] = []
        assignment = self.assigned.get(inquiry_id)
        entry = self.entries.get(inquiry_id)
        if assignment is not None:
            states.append("assigned")
            if entry is not None and assignment["reason"] != "dequeued":
                self.add(
                    "conflicting",
                    f"{assignment['id']} ({assignment['reason']}) although {inquiry_id} was queued",
                )
        if entry is not None and entry.status == "dequeued" and assignment is None:
            self.add("lost", f"inquiry {inquiry_id} dequeued at {entry.exit_ts}, never assigned")
            return None
        if entry is not None and entry.status != "dequeued":
            states.append(entry.status)
        return states

    def joined(self, inquiry: Event, earlier: list[Event]) -> str | None:
        """The buyer's queue entry this inquiry joined (it was queued when it was decided)."""
        for before in reversed(earlier):
            entry = self.entries.get(before["id"])
            if entry is not None and (entry.exit_ts is None or entry.exit_ts >= inquiry["ts"]):
                return entry.inquiry
        return None

    def check_still_queued(self, entry: _Entry) -> None:
        max_wait = self.config.queue.max_wait
        if max_wait > 0 and self.end > entry.queued_ts + max_wait + self.slack:
            self.add(
                "lost",
                f"inquiry {entry.inquiry} still queued at the end, "
                f"{self.end - entry.queued_ts} ms after entering (max_wait {max_wait})",
            )
            return
        free = self.free_agents(entry.group)
        if free:
            self.add(
                "lost",
                f"inquiry {entry.inquiry} still queued at the end in "
                f"{entry.group!r} while {free} had capacity",
            )

    def free_agents(self, group: str | None) -> list[str]:
        """Members of the queue's group(s) online at the end (last agent_status) below cap."""
        status: dict[str, str] = {}
        for e in self.inputs:
            if e["type"] == "agent_status":
                status[e["agent_id"]] = e["status"]
        groups = [
            g
            for g in self.config.groups
            if g.name == group or (group is None and g.accept_unmatched)
        ]
        free = []
        for g in groups:
            for agent in g.agents:
                cap = self.cap(agent, g.name)
                if status.get(agent) == "online" and (cap is None or self.load[agent] < cap):
                    free.append(agent)
        return free

    def unclosed(self) -> None:
        """Sessions open at the end whose timeout passed with the agent having written last."""
        last: dict[str, Event] = {}
        for e in self.inputs:
            if e["type"] == "message":
                last[e["buyer_id"]] = e
        timeout = self.config.queue.session_timeout
        for s in self.open.values():
            message = last.get(s.buyer)
            if message is not None and message["from"] == "buyer":
                continue  # the agent owes a reply: open however long it takes
            since = max(s.start_ts, message["ts"] if message else 0)
            if self.end > since + timeout + self.slack:
                self.add(
                    "unclosed",
                    f"session {s.inquiry} (buyer {s.buyer}, {s.agent}) still "
                    f"open {self.end - since} ms after the last reply",
                )
