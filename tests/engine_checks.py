"""The invariants the observer checks, one name each, for `tests/core/test_engine_properties.py`.

`Checks` is the half of `Observer` that judges: reporting, the invariants, and what the
contract predicts; the observer's bookkeeping lives in `tests/engine_observer.py`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from daemon.core.candidate import Candidate
from daemon.core.config import ShopConfig, parse_policy
from daemon.core.engine import Engine
from daemon.core.experiment import CONTROL, Experiment
from daemon.core.replies import HOUR_MINUTES, MINUTE_MS, REPLY_BUCKETS_MS
from daemon.core.shop import ShopEngine
from tests.engine_model import (
    NO_MATCH,
    Ended,
    Entry,
    Expected,
    Key,
    Moving,
    Open,
    Rules,
    Silent,
    standing,
)
from tests.strategies import SHOP
from topics.events import (
    AgentStatus,
    Assignment,
    AssignReason,
    BuyerInquired,
    InputEvent,
    Mode,
    OutputEvent,
    QueueStatus,
    QueueUpdate,
    SessionClosed,
    SessionTransferred,
)

CHECKS = frozenset({
    "arms", "caps", "fates", "fields", "ids", "matching", "memory", "moves", "one_agent", "online",
    "order", "precedence", "rejections", "replies", "selection", "stranded", "stuck",
    "timing", "updates", "way_back",
})  # fmt: skip
"""Every check name `fail` reports under; a test selects its invariants among these."""


def known_checks(names: set[str]) -> set[str]:
    """`names`, or ValueError naming the unknown ones and the valid ones (a misspelled
    name would otherwise select nothing, and its invariant would go unchecked)."""
    unknown = names - CHECKS
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; the checks are {sorted(CHECKS)}")
    return names


class Checks:
    """Reporting and the invariants; `Observer` supplies the state declared here."""

    config: ShopConfig
    checks: set[str]
    engine: Engine | None
    rules: Rules
    status: dict[str, str]
    now: int
    sessions: dict[str, Open]
    load: Counter[str]
    pending: Counter[str]
    replied: dict[str, list[tuple[int, int]]]
    shift: Counter[str]
    last_assigned: Counter[str]
    previous: dict[str, Ended]
    silent: dict[str, Silent]
    queues: dict[Key, dict[str, Entry]]
    queued: dict[str, Entry]
    joined: dict[str, str]
    arm_counts: dict[str, Counter[str]]
    log: list[str]

    # -------------------------------------------------------------------- reporting

    def fail(self, check: str, message: str) -> None:
        known_checks({check})
        if check in self.checks:
            raise AssertionError(f"[{check}] {message}\n--- trace ---\n" + "\n".join(self.log))

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            raise AssertionError(f"[bookkeeping] {message}\n--- trace ---\n" + "\n".join(self.log))

    # ----------------------------------------------------------------- the invariants

    def check_cap(self, a: Assignment, ev: InputEvent | None) -> None:
        """contract §6 caps hold, except repeat entry to the previous agent, to_agent."""
        assert a.group is not None
        cap = self.rules.cap(a.agent_id, a.group)
        if cap is None:
            return
        previous = self.previous.get(a.buyer_id)
        if a.reason is AssignReason.REPEAT_ENTRY and previous and previous.agent == a.agent_id:
            return
        named = isinstance(ev, SessionTransferred) and ev.to_agent is not None
        if a.reason is AssignReason.TRANSFER and named:  # not what the transfer frees
            return
        if self.load[a.agent_id] + 1 > cap:
            self.fail("caps", f"{a} takes {a.agent_id} to {self.load[a.agent_id] + 1} > cap {cap}")

    def ahead_of(self, entry: Entry) -> list[Entry]:
        mine = entry.order(self.now)
        return [e for e in self.queues[entry.key].values() if e.order(self.now) < mine]

    def check_head_of_line(self, entry: Entry) -> None:
        """contract §3.1: a queue serves higher effective priority first (priority + waited ÷
        `priority_aging`), then earlier arrival."""
        if ahead := self.ahead_of(entry):
            self.fail("order", f"{entry} dequeued ahead of {ahead}")

    def check_position(self, entry: Entry, u: QueueUpdate) -> None:
        if u.position != len(self.ahead_of(entry)) + 1:
            self.fail("order", f"{u}: {len(self.ahead_of(entry))} buyers are ahead")

    def check_candidate(self, a: Assignment, key: Key, ev: InputEvent | None) -> None:
        """Chosen inside its candidate; a routed buyer passes nobody waiting there with
        equal or higher effective priority (contract §3.1)."""
        members = self.rules.members(key) if key != NO_MATCH else {}
        if members.get(a.agent_id) != a.group:
            self.fail("matching", f"{a} but the candidate is {key!r}: {members}")
        if not isinstance(ev, BuyerInquired) or a.reason is not AssignReason.ROUTED:
            return
        aging = self.config.queue.priority_aging
        mine = standing(ev.priority, 0, aging)
        queue = self.queues.get(key, {}).values()
        waiting = [e for e in queue if standing(e.priority, self.now - e.queued_at, aging) >= mine]
        if waiting:
            self.fail("order", f"{a} overtakes {waiting} queued in {key!r}")

    def eligible(self, agent: str, group: str) -> bool:
        """contract §2: online, a member, below cap where queueing applies."""
        cap = self.rules.cap(agent, group)
        return self.status[agent] == "online" and (cap is None or self.load[agent] < cap)

    def check_selection(
        self, a: Assignment, key: Key, eligible: list[str] | None = None, exclude: str = ""
    ) -> None:
        """contract §3 rule 5 for the modes whose choice the outputs determine: among the
        `eligible` agents (default: those eligible now), `exclude` left out of the choice
        but not of the count that decides the mode (a move, contract §3.6)."""
        if key == NO_MATCH:
            return
        if eligible is None:
            eligible = [x for x, g in self.rules.members(key).items() if self.eligible(x, g)]
        pool = [x for x in eligible if x != exclude]
        modes = {
            Mode.EFFICIENCY
            if m is Mode.CONVERSION and len(eligible) <= self.config.conversion_min_agents
            else m
            for m in self.modes_of(a, key)
        }
        mode = a.mode if a.mode in modes else modes.pop()
        if a.mode is not mode:
            self.fail("fields", f"{a} in {key!r} with {len(eligible)} eligible: mode {mode}")
        if mode not in (Mode.AVERAGE, Mode.EFFICIENCY) or a.agent_id not in pool:
            return

        def rank(x: str) -> tuple[float, ...]:
            if mode is Mode.AVERAGE:
                return (self.shift[x], self.last_assigned[x])
            busy = self.busy(x, a.ts)
            return (busy, self.load[x] / self.rules.agents[x].weight, self.last_assigned[x])

        best = min(pool, key=rank)
        if rank(a.agent_id) != rank(best):
            ranks = {x: rank(x) for x in pool}
            self.fail("selection", f"{a} but {mode} ranks {ranks}")

    def modes_of(self, a: Assignment, key: Key) -> set[Mode]:
        """The mode that picks for the assignment's buyer (before conversion's fallback):
        the candidate's, or in a grey test the buyer's arm's policy, control's once a
        guardrail stopped the arm (contract §3.7). The engine's record of stops gives
        their time; a stop in the same millisecond may come before or after the pick."""
        exp = self.rules.experiment
        if exp is None:
            return {self.rules.mode(key)}
        arm = exp.arm_of(a.buyer_id)
        stop = None if self.engine is None else self.running().stopped.get(arm)
        arms = {arm} if stop is None or a.ts < stop.at else {CONTROL}
        if stop is not None and a.ts == stop.at:
            arms.add(arm)
        return {parse_policy(exp.config.arms[x])[0] for x in arms}

    def running(self) -> Experiment:
        """The engine's running grey test (the harness never reloads, so it never ends)."""
        assert self.engine is not None
        running = self.engine.shop(SHOP).state.experiments.running
        self.expect(running is not None, "the shop file's grey test is not running")
        assert running is not None
        return running

    def check_arm_fields(self, o: Assignment | QueueUpdate) -> None:
        """Every assignment and queue update carries the grey test and the buyer's arm
        while the shop runs one, and neither field without (contract §3.7)."""
        exp = self.rules.experiment
        expected = (None, None) if exp is None else (exp.name, exp.arm_of(o.buyer_id))
        if (o.experiment, o.arm) != expected:
            self.fail("arms", f"{o}: the grey test and arm are {expected}")

    def check_arm_counts(self) -> None:
        """Per arm, the engine counts what the outputs give (contract §3.7): `sessions` the
        sessions opened for inquiries (a transfer or a move continues one), `buyers` those
        opened at once and the first entries in a line (an overflow is the same entry), one
        wait per session, `replies` and `in_time` the agents' replies and those within the
        deadline by the messages' reply clocks, and no more sessions converted than counted."""
        if self.engine is None or self.rules.experiment is None:
            return
        for arm, figures in self.running().figures.items():
            counts = self.arm_counts.get(arm, Counter())
            got = {
                "buyers": figures.buyers,
                "sessions": figures.sessions,
                "waits": figures.waits.total,
                "replies": figures.replies,
                "in_time": figures.in_time,
            }
            expected = {
                "buyers": counts["buyers"],
                "sessions": counts["sessions"],
                "waits": counts["sessions"],
                "replies": counts["replies"],
                "in_time": counts["in_time"],
            }
            if got != expected:
                self.fail("arms", f"arm {arm} counts {got}; the outputs say {expected}")
            if not figures.converted <= min(figures.sessions, figures.orders):
                self.fail("arms", f"arm {arm}: {figures.converted} converted, {got}")

    def busy(self, agent: str, at: int) -> bool:
        """contract §3.4: pending above `busy_threshold`, or, with `[replies]
        overdue_is_busy`, a buyer overdue at `at` (§3.6)."""
        if self.pending[agent] > self.config.busy_threshold:
            return True
        replies = self.config.replies
        return replies.overdue_is_busy and any(
            s.agent == agent and s.overdue(at, replies.deadline) for s in self.sessions.values()
        )

    # ------------------------------------------------------- moves (contract §3.6)

    def check_move_due(self, s: Open, c: SessionClosed) -> None:
        """A session closes `unanswered` only when its first buyer message has gone
        unanswered `reassign_after` by then, and only once: never one opened by a move."""
        if s.moved:
            self.fail("moves", f"{c}: {s} was opened by a move (a buyer moves once)")
        due = s.move_due(self.config.replies.reassign_after)
        if due is None or c.ts < due:
            self.fail("moves", f"{c}: {s} is not due to move (due at {due})")

    def check_move(self, a: Assignment, moving: Moving) -> None:
        """The move's assignment: to another agent (the candidate is `check_candidate`'s,
        the cap `check_cap`'s), under the old inquiry id with `~u1` (docs/contract.md §1.3)."""
        old = moving.session
        if a.agent_id == old.agent:
            self.fail("moves", f"{a}: moved back to the agent who did not answer")
        if a.inquiry_id != f"{old.inquiry_id}~u1":
            self.fail("ids", f"{a}: the move of {old.inquiry_id} is {old.inquiry_id}~u1")

    def due_to_move(self, before: int) -> list[tuple[str, Open]]:
        """The buyers whose session's first message became due to move before `before`."""
        after = self.config.replies.reassign_after
        return [
            (b, s)
            for b, s in self.sessions.items()
            if (due := s.move_due(after)) is not None and due < before
        ]

    def movable_to(self, s: Open) -> list[str]:
        """The agents a session due to move could move to now: eligible in its candidate,
        the one who did not answer excluded."""
        members = self.rules.members(s.key)
        return [x for x, g in members.items() if x != s.agent and self.eligible(x, g)]

    def check_stranded(self) -> None:
        """After every step: a buyer due to move waits only while nobody in its candidate
        but its silent agent is eligible (contract §3.6, "moved as soon as one is"). Sound
        because every change that can make an agent eligible ends in a step, and timers
        due by `now` have fired by its end. The engine's own record agrees: the buyers it
        keeps to move (`Sessions.stranded`) are exactly those."""
        due = self.due_to_move(self.now + 1)
        for buyer, s in due:
            if others := self.movable_to(s):
                self.fail("stranded", f"{buyer} due to move stays with {s}: {others} eligible")
        if self.engine is None:
            return
        shop = self.engine.shop(SHOP)
        stranded = sorted(shop.sessions.stranded)
        if stranded != sorted(b for b, _ in due):
            self.fail("stranded", f"the engine keeps {stranded} to move; due: {due}")

    def check_remembered(self) -> None:
        """The engine remembers the buyers queued, in a session, or with a last contact
        within the longest window that reads it, and no buyer without any of these
        (docs/routing.md, Memory; a contact past the windows is forgotten lazily), and
        each one's last contact (`Buyer.last`, which sticky and repeat entry read) is the
        one the outputs give: never a session left unanswered, nor (contract §3.6) an
        earlier one with the agent who left it so."""
        if self.engine is None:
            return
        shop = self.engine.shop(SHOP)
        keep = shop.sessions.keep_ms
        recent = {  # the buyers' last contacts per the outputs, in the windows that read them
            b: (e.agent, e.ended_at)
            for b, e in self.previous.items()
            if self.now - e.ended_at < keep
        }
        lasts = {
            b: (last.agent_id, last.ended_at)
            for b, buyer in shop.buyers.items()
            if (last := buyer.last) is not None and self.now - last.ended_at < keep
        }
        if lasts != recent:
            self.fail("way_back", f"the engine's last contacts {lasts}; the outputs say {recent}")
        must = {*self.sessions, *self.queued, *recent}
        may = must | set(self.previous)  # a contact past its windows goes at the next purge
        if not must <= set(shop.buyers) <= may:
            self.fail("memory", f"the engine remembers {sorted(shop.buyers)}: {must} to {may}")

    def check_moves_first(self, a: Assignment, key: Key) -> None:
        """A buyer due to move moves before the line of its candidate is served (contract
        §3.6): no dequeue there to an agent it could have moved to. Only buyers due before
        this instant: two timers of one millisecond fire one after the other."""
        for buyer, s in self.due_to_move(a.ts):
            if s.key == key and a.agent_id in self.movable_to(s):
                self.fail("stranded", f"{a} while {buyer} due to move stays with {s}")

    def check_no_way_back(self, a: Assignment) -> None:
        """Sticky and repeat entry never lead a buyer back to the agent who left its first
        message unanswered, for `sticky_window` (contract §3.6).

        Repeat entry's fallback to another agent of the previous agent's group (§3.5)
        included: where the silent agent alone is free, repeat entry does not apply."""
        silent = self.silent.get(a.buyer_id)
        window = self.config.sticky_window
        if silent and silent.agent == a.agent_id and a.ts - silent.at < window:
            self.fail("way_back", f"{a}: {a.agent_id} left {a.buyer_id} unanswered at {silent.at}")

    def check_expiry(self, entry: Entry, u: QueueUpdate) -> None:
        max_wait = self.config.queue.max_wait
        if max_wait <= 0 or u.ts != entry.entered_at + max_wait:
            self.fail("timing", f"{u} of {entry}: max_wait is {max_wait} ms")

    def check_on_time(self) -> None:
        """contract §3.2 and 3.1: no session or queued buyer outlives its deadline."""
        q = self.config.queue
        for s in self.sessions.values():
            if not s.buyer_waiting and s.last_agent_at + q.session_timeout <= self.now:
                self.fail("timing", f"{s} is still open at {self.now}")
        for e in self.queued.values():
            if q.max_wait > 0 and e.entered_at + q.max_wait <= self.now:
                self.fail("timing", f"{e} is still queued at {self.now}")
            if e.stale_since is not None and e.stale_since + q.update_interval <= self.now:
                self.fail("updates", f"{e} has not been told its position by {self.now}")

    def refusal(self, ev: InputEvent) -> str | None:
        """Why the contract (and docs/routing.md) rejects `ev`, or None."""
        agent_id = getattr(ev, "agent_id", None)
        if agent_id is not None and agent_id not in self.rules.agents:
            return "unknown agent"
        if isinstance(ev, BuyerInquired):
            idle = ev.buyer_id not in self.sessions and ev.buyer_id not in self.queued
            if idle and self.predict(ev).key == NO_MATCH:  # rules 2-3 come before matching
                return "no group takes the inquiry"
        if isinstance(ev, SessionTransferred):
            return self.transfer_refusal(ev)
        return None

    def transfer_refusal(self, ev: SessionTransferred) -> str | None:
        s = self.sessions.get(ev.buyer_id)
        if s is None:
            return "no session"
        if ev.to_agent is not None:
            target = ev.to_agent
            problems = {
                "to_agent unknown or in no group": target not in self.rules.grouped,
                "to_agent is the current agent": target == s.agent,
                "to_agent not online": self.status.get(target) != "online",
            }
        else:
            group = self.rules.groups.get(ev.to_group or "")
            members = group.agents if group else ()
            problems = {
                "to_group unknown": group is None,
                "nobody in to_group can take the buyer": not any(
                    a != s.agent and self.eligible(a, ev.to_group or "") for a in members
                ),
            }
        return next((reason for reason, found in problems.items() if found), None)

    def check_inquiry_outputs(
        self, ev: BuyerInquired, before: Open | Entry | None, own: list[OutputEvent]
    ) -> None:
        """contract §3 rule 1: in a session → active_session; queued → stays queued."""
        shapes = [(type(o), getattr(o, "reason", None) or o.status, o.inquiry_id) for o in own]  # type: ignore[union-attr]
        if isinstance(before, Open):
            ok = shapes == [(Assignment, AssignReason.ACTIVE_SESSION, ev.id)]
        elif isinstance(before, Entry):
            ok = shapes == [(QueueUpdate, QueueStatus.WAITING, before.inquiry_id)]
            self.joined[ev.id] = before.inquiry_id
        else:
            ok = len(shapes) == 1 and shapes[0][1:] in {
                (AssignReason.ROUTED, ev.id),
                (AssignReason.STICKY, ev.id),
                (AssignReason.REPEAT_ENTRY, ev.id),
                (QueueStatus.QUEUED, ev.id),
            }
        if not ok:
            self.fail("fates", f"{ev} from a buyer with {before} produced {own}")

    def predict(self, ev: BuyerInquired) -> Expected:
        """contract §3 rules 2–6 and 3.5, in order, for a buyer with no session or queue."""
        last = self.previous.get(ev.buyer_id)
        repeat_window, sticky_window = (
            self.config.queue.repeat_entry_window,
            self.config.sticky_window,
        )
        since = self.now - last.ended_at if last else 0
        if last and last.key != NO_MATCH and repeat_window > 0 and since < repeat_window:
            members = self.rules.members(last.key)
            group = members.get(last.agent)
            caps = [self.rules.cap(a, g) for a, g in members.items()]
            queueing = self.rules.cap(last.agent, group) is not None if group else any(caps)
            if queueing:
                if group and self.status[last.agent] == "online":
                    return Expected(AssignReason.REPEAT_ENTRY, {last.agent}, last.key)
                # contract §3.5: another agent of the previous agent's group, not the one
                # who left the buyer unanswered (§3.6); if it alone is free, not repeat entry
                fallback = self.route(group or last.key, AssignReason.REPEAT_ENTRY)
                silent = self.silent.get(ev.buyer_id)
                if silent is None or self.now - silent.at >= sticky_window:
                    return fallback
                others = fallback.agents - {silent.agent}
                if others or silent.agent not in fallback.agents:
                    return replace(fallback, agents=others) if others else fallback
        if last and last.key != NO_MATCH and sticky_window > 0 and since < sticky_window:
            group = self.rules.members(last.key).get(last.agent)
            if group and self.eligible(last.agent, group):
                return Expected(AssignReason.STICKY, {last.agent}, last.key)
        return self.route(self.rules.candidate_key(ev.context), AssignReason.ROUTED)

    def route(self, key: Key, reason: AssignReason) -> Expected:
        """An eligible agent of the candidate, else its queue."""
        members = self.rules.members(key) if key != NO_MATCH else {}
        agents = {a for a, g in members.items() if self.eligible(a, g)}
        return Expected(reason if agents else QueueStatus.QUEUED, agents, key)

    def check_precedence(
        self, ev: BuyerInquired, expected: Expected | None, own: list[OutputEvent]
    ) -> None:
        if expected is None or len(own) != 1:
            return  # in a session or queued (or the output count is wrong: "fates")
        o = own[0]
        if isinstance(o, Assignment):
            got: tuple[object, ...] = (o.reason, o.agent_id in expected.agents)
        else:
            got = (getattr(o, "status", None), getattr(o, "group", None) == expected.key)
        if got != (expected.outcome, True):
            self.fail("precedence", f"{ev} produced {o}; expected {expected}")

    def check_not_stuck(self) -> None:
        """contract §3.1: nobody waits while an agent of the candidate is eligible."""
        if "stuck" not in self.checks:
            return
        for key, entries in self.queues.items():
            for agent, group in self.rules.members(key).items():
                if entries and self.eligible(agent, group):
                    self.fail("stuck", f"{agent} is eligible while {list(entries)} wait in {key}")
        if self.engine is None:
            return
        shop = self.engine.shop(SHOP)
        engine_queues: dict[Key, list[str]] = {}
        for cand in shop.all_candidates():
            if cand.line.items:
                engine_queues[cand.group] = [item.buyer_id for item in cand.line.items]
                idle = [a for a in cand.caps if cand.is_eligible(shop.agents[a])]
                if idle:
                    self.fail("stuck", f"engine: {idle} eligible while {cand.key!r} has a queue")
        mine = {
            key: [e.buyer for e in sorted(entries.values(), key=lambda e: e.order(self.now))]
            for key, entries in self.queues.items()
            if entries
        }
        if mine != engine_queues:
            self.fail("stuck", f"queues per the outputs {mine} != the engine's {engine_queues}")

    def check_agent_indexes(self) -> None:
        """The engine's per-agent indexes equal what its sessions say (pending, quiet, the
        overdue counts and the busy flag)."""
        if self.engine is None:
            return
        shop = self.engine.shop(SHOP)
        deadline = shop.config.replies.deadline
        by_group: Counter[str] = Counter()
        for agent in shop.agents.values():
            sessions = {b: shop.buyers[b].session for b in agent.sessions}
            waiting = sum(1 for s in sessions.values() if s is not None and s.buyer_waiting)
            quiet = {b: s.last_agent_at for b, s in sessions.items() if s and not s.buyer_waiting}
            times = list(agent.quiet.values())
            self.expect(
                (agent.pending, agent.quiet, times) == (waiting, quiet, sorted(times)),
                f"{agent.id}: pending {agent.pending}, quiet {agent.quiet}; "
                f"its sessions say {waiting} and {quiet} (oldest first)",
            )
            late = [
                s
                for s in sessions.values()
                if s and s.buyer_waiting and s.waiting_since + deadline <= shop.now
            ]
            by_group.update(s.group for s in late if s.group is not None)
            flags = sum(1 for s in sessions.values() if s and s.overdue)
            self.expect(
                (agent.overdue, flags) == (len(late), len(late)),
                f"{agent.id}: overdue {agent.overdue} ({flags} flagged); its sessions say "
                f"{len(late)} overdue at {shop.now}",
            )
            if agent.id in self.status and agent.busy != self.busy(agent.id, shop.now):
                self.fail("selection", f"{agent.id} busy: {agent.busy} at {shop.now}")
        counted = {g: n for g, n in shop.sessions.overdue_by_group.items() if n}
        self.expect(counted == dict(by_group), f"overdue by group {counted} != {by_group}")
        self.check_slot_index()

    def check_replies(self) -> None:
        """contract §3.6: the engine's clocks are the ones the messages started, and each
        group's figures are its reply times as the messages give them — the distribution
        (count, sum, buckets) and, over the minute of `now` and the 59 before, the replies
        and those within the deadline."""
        if self.engine is None:
            return
        shop = self.engine.shop(SHOP)
        for buyer, s in self.sessions.items():
            session = shop.buyers[buyer].session
            clock = (session.buyer_waiting, session.waiting_since) if session else None
            if clock != (s.buyer_waiting, s.owed_since if s.buyer_waiting else 0):
                self.fail("replies", f"{buyer}'s clock is {clock}; the messages say {s}")
        deadline = self.config.replies.deadline
        minute = shop.now // MINUTE_MS
        for cand in shop.all_candidates():
            if cand.group is None or cand.key != cand.group:
                continue  # a pool of several groups: the figures are its groups'
            times = self.replied.get(cand.group, [])
            recent = [ms for at, ms in times if at // MINUTE_MS > minute - HOUR_MINUTES]
            buckets = [sum(1 for _, ms in times if ms <= bound) for bound in REPLY_BUCKETS_MS]
            expected = (
                [*buckets, len(times)],
                sum(ms for _, ms in times),
                (len(recent), sum(1 for ms in recent if ms <= deadline)),
            )
            figures = cand.replies
            got = (figures.cumulative(), figures.hist_sum_ms, figures.last_hour(shop.now))
            if got != expected:
                self.fail("replies", f"{cand.group}'s reply figures {got}, expected {expected}")

    def check_slot_index(self) -> None:
        """Each candidate's slot-time index (daemon/core/slots.py) equals the slot times
        recomputed from the sessions as estimate.py's docstring defines them, and its online
        capacity and shared parts equal those recomputed from the agents."""
        if self.engine is None:
            return
        shop = self.engine.shop(SHOP)
        now, timeout = shop.now, shop.config.queue.session_timeout
        for cand in shop.all_candidates():
            expected: list[int] = []
            for agent_id, cap in cand.caps.items():
                agent = shop.agents.get(agent_id)
                if cap is None or agent is None or agent.status is not AgentStatus.ONLINE:
                    continue
                sessions = [shop.buyers[b].session for b in agent.sessions]
                if len(sessions) < cap:
                    continue
                quiet = sorted(s.last_agent_at for s in sessions if s and not s.buyer_waiting)
                ends = [max(q + timeout, now) for q in quiet]
                ends += [now + timeout] * sum(1 for s in sessions if s and s.buyer_waiting)
                expected += ends[len(sessions) - cap :]
            capacity = cand.capacity
            self.expect(
                (capacity.online_weight, {k: v for k, v in capacity.shared.items() if v})
                == _online_capacity(cand, shop),
                f"online capacity of {cand.key!r} and the parts others share: the engine "
                f"says {capacity.online_weight} and {capacity.shared}, the agents "
                f"{_online_capacity(cand, shop)}",
            )
            got = list(cand.slots.times(cand.caps, shop.agents, now, timeout))
            self.expect(
                got == sorted(expected),
                f"slot times of {cand.key!r}: the index says {got}, "
                f"the sessions {sorted(expected)}",
            )


def _online_capacity(cand: Candidate, shop: ShopEngine) -> tuple[int, dict[str, int]]:
    """A candidate's online capacity and, per other candidate, the part of that one's online
    capacity held by agents also in this one, recomputed from the agents."""
    online = {a for a, s in shop.agents.items() if s.status is AgentStatus.ONLINE}
    total = sum(cand.weight(a) for a in cand.caps if a in online)
    shared = {}
    for other in shop.all_candidates():
        part = sum(other.weight(a) for a in other.caps if a in online and a in cand.caps)
        if other is not cand and part:
            shared[other.key] = part
    return total, shared
