"""Snapshot a shop to plain JSON-able data and restore it (for checkpoints and tests).

The snapshot holds facts only: agents, buyers (sessions, queue entries, last contacts),
what candidates learned, recent event ids and counters. Indexes, aggregates, timers and the
list of recent session ends are derived again on restore, so a restored shop continues
exactly like the original: the same events at the same times give the same outputs.

A snapshot is a small `meta` part plus one row per agent and per buyer and the list of
recent event ids, so a checkpoint can write only what changed: `take_delta` gives the rows
changed since the last call (None for a deleted row) and the ids remembered since, and
`apply_delta` applies one to a stored snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.core.candidate import runtime_of
from daemon.core.config import ShopConfig
from daemon.core.model import AgentState, Buyer, BuyerPhase, LastContact, QueueEntry, Session
from daemon.core.shop import ShopEngine
from topics.events import AgentStatus, InquiryContext

FORMAT = 2
META_FIELDS = ("format", "shop_id", "now", "seq", "candidates")

_AGENT_FIELDS = (
    "shift_assignments",
    "last_assigned_at",
    "online_since",
    "online_ms",
    "sessions_total",
    "converted_sessions",
    "orders",
    "order_amount",
    "external_rate",
    "assigned_by_reason",
    "assigned_while_busy",
    "assigned_by_rule",
    "assigned_by_group",
)
_DICT_FIELDS = ("assigned_by_reason", "assigned_by_rule", "assigned_by_group")


class SnapshotError(ValueError):
    """A snapshot this version cannot restore."""


Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ShopDelta:
    """What changed in a shop since the previous delta: write it on top of the last one."""

    meta: dict[str, Any]  # always whole (small)
    agents: dict[str, Row | None]  # None: the agent was dropped
    buyers: dict[str, Row | None]  # None: the buyer was forgotten
    seen: list[str]  # event ids remembered since, oldest first


def dump_meta(shop: ShopEngine) -> dict[str, Any]:
    """The shop-wide part of a snapshot: counters, clock and what candidates learned."""
    return {
        "format": FORMAT,
        "shop_id": shop.config.id,
        "now": shop.now,
        "seq": shop.seq,
        "candidates": {c.key: runtime_of(c) for c in shop.all_candidates()},
    }


def dump_shop(shop: ShopEngine) -> dict[str, Any]:
    """The shop's state as plain data (dicts, lists, str, int, float, bool, None)."""
    return {
        **dump_meta(shop),
        "agents": {a.id: _dump_agent(a) for a in shop.agents.values()},
        "buyers": {b.id: _dump_buyer(b) for b in shop.buyers.values()},
        "seen": shop.seen.ids(),
    }


def take_delta(shop: ShopEngine) -> ShopDelta | None:
    """The changes since the last call (None if nothing changed); requires a tracking shop."""
    changes = shop.effects.take_changes()
    if changes is None:
        return None
    agents, buyers = shop.agents, shop.buyers
    delta = ShopDelta(
        meta=dump_meta(shop),
        agents={i: _dump_agent(agents[i]) if i in agents else None for i in changes.agents},
        buyers={i: _dump_buyer(buyers[i]) if i in buyers else None for i in changes.buyers},
        seen=changes.seen,
    )
    return delta


def apply_delta(data: dict[str, Any], delta: ShopDelta, *, dedup_capacity: int) -> None:
    """Bring a snapshot (`dump_shop` form, changed in place) up to date with `delta`."""
    data.update(delta.meta)
    for key in ("agents", "buyers"):
        rows = data.setdefault(key, {})
        for row_id, row in getattr(delta, key).items():
            if row is None:
                rows.pop(row_id, None)
            else:
                rows[row_id] = row
    seen = data.setdefault("seen", [])
    seen.extend(delta.seen)
    del seen[: max(0, len(seen) - dedup_capacity)]


def load_shop(
    config: ShopConfig, data: dict[str, Any], *, dedup_capacity: int, track: bool = False
) -> ShopEngine:
    """A shop engine for `config` in the state `dump_shop` recorded (rows in any order)."""
    if data.get("format") != FORMAT or data.get("shop_id") != config.id:
        raise SnapshotError(
            f"snapshot is format {data.get('format')!r} of shop {data.get('shop_id')!r}; "
            f"expected format {FORMAT} of shop {config.id!r}"
        )
    shop = ShopEngine(config, dedup_capacity=dedup_capacity, track=track)
    shop.now, shop.seq = data["now"], data["seq"]
    agents: dict[str, AgentState] = {}
    shop.state.agents = agents
    for row in sorted(data["agents"].values(), key=lambda row: int(row["ordinal"])):
        agent = _load_agent(row)
        agents[agent.id] = agent
    ends: list[tuple[int, str]] = []
    for row in data["buyers"].values():
        buyer = _load_buyer(row)
        shop.buyers[buyer.id] = buyer
        if buyer.last is not None:
            ends.append((buyer.last.ended_at, buyer.id))
    _index_sessions(shop)
    shop.rebuild(data["candidates"])
    for buyer in shop.buyers.values():
        entry = buyer.queued
        if entry is not None:
            cand = shop.candidate(entry.cand)
            if cand is None:
                raise SnapshotError(f"buyer {buyer.id!r} is queued in unknown group {entry.cand!r}")
            cand.queue.add(cand.item(entry, buyer.id))
        shop.arm_buyer_timers(buyer)
    # Only each buyer's latest end matters: older entries of the same buyer delete nothing.
    shop.sessions.recent_ends.extend(sorted(ends))
    for event_id in data["seen"]:
        shop.seen.add(event_id)
    shop.effects.forget_changes()  # a restored shop equals its store
    return shop


def _index_sessions(shop: ShopEngine) -> None:
    """Give every agent the session indexes derived from the sessions (pending, quiet)."""
    quiet: list[tuple[int, str, AgentState]] = []
    for buyer in shop.buyers.values():
        if (session := buyer.session) is None:
            continue
        agent = shop.agents[session.agent_id]
        if session.buyer_waiting:
            agent.pending += 1
        else:
            quiet.append((session.last_agent_at, buyer.id, agent))
    for last_agent_at, buyer_id, agent in sorted(quiet, key=lambda q: q[:2]):
        agent.quiet[buyer_id] = last_agent_at  # oldest first


def _dump_agent(agent: AgentState) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": agent.id,
        "ordinal": agent.ordinal,
        "status": agent.status.value,
        "sessions": list(agent.sessions),
    }
    row.update({name: getattr(agent, name) for name in _AGENT_FIELDS})
    return row


def _load_agent(row: dict[str, Any]) -> AgentState:
    agent = AgentState(row["id"], row["ordinal"], AgentStatus(row["status"]))
    agent.sessions = dict.fromkeys(row["sessions"])
    for name in _AGENT_FIELDS:
        if name in row:  # a row written before a field existed keeps the default
            setattr(agent, name, dict(row[name]) if name in _DICT_FIELDS else row[name])
    if "assigned_by_rule" not in row:  # older rows: the reasons, without the modes
        agent.assigned_by_rule = dict(agent.assigned_by_reason)
    return agent


def _dump_buyer(buyer: Buyer) -> dict[str, Any]:
    row: dict[str, Any] = {"id": buyer.id, "phase": buyer.phase.value}
    if (s := buyer.session) is not None:
        row["session"] = [
            s.inquiry_id, s.agent_id, s.cand, s.group, s.started_at, s.last_agent_at,
            s.buyer_waiting, s.converted,
        ]  # fmt: skip
    if (q := buyer.queued) is not None:
        ctx = q.context
        row["queued"] = [
            q.inquiry_id, q.cand, q.priority, q.arrival, q.seq, q.entered_at,
            [list(ctx.crowd), ctx.item_id, ctx.intent, ctx.order_status],
            q.updates, q.last_position, q.last_estimate, q.last_eta,
        ]  # fmt: skip
    if (last := buyer.last) is not None:
        row["last"] = [last.agent_id, last.cand, last.ended_at, last.converted]
    return row


def _load_buyer(row: dict[str, Any]) -> Buyer:
    buyer = Buyer(row["id"], BuyerPhase(row["phase"]))
    if "session" in row:
        buyer.session = Session(*row["session"])
    if "queued" in row:
        q = row["queued"]
        crowd, item_id, intent, status = q[6]
        ctx = InquiryContext(tuple(crowd), item_id, intent, status)
        eta = q[10] if len(q) > 10 else 0  # rows written before the ETA was kept
        buyer.queued = QueueEntry(q[0], q[1], q[2], q[3], q[4], q[5], ctx, q[7], q[8], q[9], eta)
    if "last" in row:
        buyer.last = LastContact(*row["last"])
    return buyer
