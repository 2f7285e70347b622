"""Snapshot a shop to plain JSON-able data and restore it (for checkpoints and tests).

The snapshot holds facts only: agents, buyers (sessions, queue entries, last contacts),
what candidates learned, recent event ids and counters. Indexes, aggregates and timers are
derived again on restore, so a restored shop continues exactly like the original: the same
events at the same times give the same outputs.
"""

from __future__ import annotations

from typing import Any

from daemon.core.candidate import runtime_of
from daemon.core.config import ShopConfig
from daemon.core.model import AgentState, Buyer, BuyerPhase, LastContact, QueueEntry, Session
from daemon.core.reload import rebuild
from daemon.core.shop import ShopEngine
from topics.events import AgentStatus, InquiryContext

FORMAT = 1

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
)


class SnapshotError(ValueError):
    """A snapshot this version cannot restore."""


def dump_shop(shop: ShopEngine) -> dict[str, Any]:
    """The shop's state as plain data (dicts, lists, str, int, float, bool, None)."""
    return {
        "format": FORMAT,
        "shop_id": shop.config.id,
        "now": shop.now,
        "seq": shop.seq,
        "agents": [_dump_agent(a) for a in shop.agents.values()],
        "buyers": [_dump_buyer(b) for b in shop.buyers.values()],
        "candidates": {c.key: runtime_of(c) for c in shop.all_candidates()},
        "recent_ends": [list(pair) for pair in shop.recent_ends],
        "seen": shop.seen.ids(),
    }


def load_shop(config: ShopConfig, data: dict[str, Any], *, dedup_capacity: int) -> ShopEngine:
    """A shop engine for `config` in the state `dump_shop` recorded."""
    if data.get("format") != FORMAT or data.get("shop_id") != config.id:
        raise SnapshotError(
            f"snapshot is format {data.get('format')!r} of shop {data.get('shop_id')!r}; "
            f"expected format {FORMAT} of shop {config.id!r}"
        )
    shop = ShopEngine(config, dedup_capacity=dedup_capacity)
    shop.now, shop.seq = data["now"], data["seq"]
    shop.agents = {}
    for row in data["agents"]:
        agent = _load_agent(row)
        shop.agents[agent.id] = agent
    for row in data["buyers"]:
        buyer = _load_buyer(row)
        shop.buyers[buyer.id] = buyer
        if buyer.session is not None and buyer.session.buyer_waiting:
            shop.agents[buyer.session.agent_id].pending += 1
    rebuild(shop, data["candidates"])
    for buyer in shop.buyers.values():
        entry = buyer.queued
        if entry is not None:
            cand = shop.candidate(entry.cand)
            if cand is None:
                raise SnapshotError(f"buyer {buyer.id!r} is queued in unknown group {entry.cand!r}")
            cand.queue.add(cand.item(entry, buyer.id))
        shop.arm_buyer_timers(buyer)
    shop.recent_ends.extend((int(t), str(b)) for t, b in data["recent_ends"])
    for event_id in data["seen"]:
        shop.seen.add(event_id)
    return shop


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
        setattr(agent, name, row[name])
    agent.assigned_by_reason = dict(row["assigned_by_reason"])
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
            q.updates, q.last_position, q.last_estimate,
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
        buyer.queued = QueueEntry(q[0], q[1], q[2], q[3], q[4], q[5], ctx, q[7], q[8], q[9])
    if "last" in row:
        buyer.last = LastContact(*row["last"])
    return buyer
