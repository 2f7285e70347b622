"""Snapshot a shop to plain JSON-able data and restore it (for checkpoints and tests).

The snapshot holds facts only: agents (with when each usually comes online: arrivals.py),
buyers (sessions, queue entries, last contacts), what candidates learned, recent event ids
and counters. Indexes, aggregates, timers and the
list of recent session ends are derived again on restore, so a restored shop continues
exactly like the original: the same events at the same times give the same outputs.

A snapshot is a small `meta` part plus one row per agent and per buyer and the list of
recent event ids, so a checkpoint can write only what changed: `take_delta` gives the rows
changed since the last call (None for a deleted row) and the ids remembered since.

What writing a delta means is defined once, here, for the store and the tests alike:
`delta_ops` turns a delta into operations on the stored parts (the meta part, the agent and
buyer rows, the seen list; `daemon/store.py` encodes them for its write script),
`apply_ops` is what those operations do to the parts, and `stored_snapshot` reads the parts
back as a snapshot (what a claim gives the restore). `apply_delta` chains the three on a
snapshot in `dump_shop` form.

**Formats.** Old and new versions share the rows during every rolling deploy and rollback:

- Every agent and buyer row carries `format`, the checkpoint format of the Fenliu that wrote
  it (`FORMAT`); a row without one is format 2, the first row layout (no version stored
  format 1, a single document, in Redis). The meta part carries `writer`, the same for itself.
- The meta part's `format` is the **shop format**: the oldest format a reader must know to
  load the shop and write it back without losing anything. A daemon loads a shop only when it
  knows that format (`READS`); otherwise `load_shop` refuses it with a `SnapshotError` that
  says so (the service sets the shop aside with that cause, writes nothing to it and keeps
  its records for a daemon that reads it). Versions before format 3 check `format == 2`.
- A field a version does not know, in a row or the meta part, is kept (`kept`) and written
  back as it was when that version rewrites the row. So a newer version may add fields that
  older ones carry along unchanged while they run the shop (valid when stale, or checked on
  reading, which the rows' `format` allows: a row an older version rewrote says so); data
  that must not go stale raises the shop format instead, and older versions then refuse the
  shop. The shop format never goes down.
- New data goes in new keys, never at the end of a row's positional lists (`session`,
  `queued`, `last`): an older version reads those by position.

What each format added: 3, the stamps (`format`, `writer`). 4, the reply clock of a buyer's
session (contract §3.6) under the buyer row's `reply` key: `[started at, answered, moved]`
(when the running clock started, 0 when none runs; whether the agent wrote in the session;
moved: the session was opened by a move for an unanswered message, missing: false; later in
4, a fourth item: when the chat's first session opened, `Session.opened_at`, missing: the
session's start; and the key `last_opened`, `[ended_at, opened_at]` of the last contact,
used only when its end is the stored `last`'s, else not known: a grey test counts an order
only for a chat it counted, §3.7; and the key `silent`, `[agent_id, at]`, the agent who
left the buyer's first message unanswered, which repeat entry's fallback avoids, §3.6). It is
read only from a row format 4 or later wrote: a row an older version wrote (none) or
rewrote (a stale `reply` carried along) has its clock taken as started at the snapshot's
`now` if the buyer waits, and `answered` as `last_agent_at > started_at` (the agent wrote
after the assignment's greeting). Also since 4, each candidate's runtime in the meta part
has its group's reply figures under `replies` (daemon/core/replies.py); an older version
drops them when it writes the meta part, and they count afresh from none. Later in 4, the
meta part's `experiments` (daemon/core/experiment.py: the running grey test's figures and
stopped arms, the finished ones the report reads), present only in a shop that ran one: an
older version, which knows no experiments, carries it along stale, and a newer one then
continues from those counts (the buyers the older one routed are not counted, and were not
routed by their arms either).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from daemon.core.candidate import runtime_of
from daemon.core.config import ShopConfig
from daemon.core.model import AgentState, Buyer, BuyerPhase, LastContact, QueueEntry, Session
from daemon.core.shop import ShopEngine
from topics.events import AgentStatus, InquiryContext

FORMAT = 4  # the checkpoint format this version writes (see Formats above)
SHOP_FORMAT = 2  # the shop format of what it writes: format-2 readers lose only the stamps
READS = range(2, FORMAT + 1)  # the shop formats it loads
META_FIELDS = ("format", "shop_id", "now", "seq", "candidates")
ROW_PARTS = ("agents", "buyers")  # the parts of a snapshot kept as one row per id
_NOT_META = frozenset((*ROW_PARTS, "seen"))
_KNOWN_META = frozenset((*META_FIELDS, "writer", "experiments", *_NOT_META))

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
    "profile_at",
    "observed_since",
    "offline_at",
    "suspended_at",
    "pause_ms",
    "taken_unanswered",
)
_PROFILE_FIELDS = ("arrivals", "departures")  # {time-of-week bin: weight}, kept as pairs
_DICT_FIELDS = ("assigned_by_reason", "assigned_by_rule", "assigned_by_group")
_AGENT_KEYS = frozenset(
    ("format", "id", "ordinal", "status", "sessions", *_AGENT_FIELDS, *_PROFILE_FIELDS)
)
_BUYER_KEYS = frozenset(
    ("format", "id", "phase", "session", "queued", "last", "reply", "last_opened", "silent")
)
REPLY_SINCE = 4  # the format whose buyer rows carry the reply clock


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
    state = shop.state
    return {
        **state.kept,
        "format": max(SHOP_FORMAT, state.stored_format),
        "writer": FORMAT,
        "shop_id": shop.config.id,
        "now": shop.now,
        "seq": shop.seq,
        "candidates": {c.key: runtime_of(c) for c in shop.all_candidates()},
        **_experiments(shop),
    }


def _experiments(shop: ShopEngine) -> dict[str, Any]:
    """The meta part's `experiments`, for a shop that ran a grey test (module docstring)."""
    experiments = shop.state.experiments
    if experiments.running is None and not experiments.finished:
        return {}
    return {"experiments": experiments.learned()}


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


@dataclass(frozen=True, slots=True)
class RowOps:
    """A delta as operations on the stored parts of a shop, in the order they are done.

    `meta` replaces the stored meta part whole; per part of `ROW_PARTS`, each row of
    `set_rows[part]` replaces the row of that id, then each id of `delete_rows[part]` is
    removed (an id is never in both); `append_seen` goes at the end of the seen list, then,
    unless `keep_seen` is None, only the last `keep_seen` ids stay (Redis `LTRIM -n -1`, so
    0 keeps them all). Never two operations on the same row: their order within a part is
    free.
    """

    meta: dict[str, Any]
    set_rows: dict[str, dict[str, Row]]  # part -> row id -> row
    delete_rows: dict[str, list[str]]  # part -> row ids
    append_seen: list[str]
    keep_seen: int | None


@dataclass(slots=True)
class StoredParts:
    """The parts of a shop as a store keeps them (`apply_ops` writes, `stored_snapshot`
    reads): the meta part (None until a first write), rows by id, recent event ids."""

    meta: dict[str, Any] | None = None
    agents: dict[str, Row] = field(default_factory=dict)
    buyers: dict[str, Row] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)


def delta_ops(delta: ShopDelta, *, dedup_capacity: int) -> RowOps:
    """What writing `delta` does to the stored parts: the rows to set and to delete, the
    ids to append and, when any are appended, the seen list trimmed to `dedup_capacity`."""
    parts: dict[str, dict[str, Row | None]] = {p: getattr(delta, p) for p in ROW_PARTS}
    return RowOps(
        meta=delta.meta,
        set_rows={p: {i: r for i, r in rows.items() if r is not None} for p, rows in parts.items()},
        delete_rows={p: [i for i, r in rows.items() if r is None] for p, rows in parts.items()},
        append_seen=delta.seen,
        keep_seen=dedup_capacity if delta.seen else None,
    )


def apply_ops(parts: StoredParts, ops: RowOps) -> None:
    """Do `ops` to `parts` (changed in place) exactly as the store's write script does."""
    parts.meta = ops.meta
    for part in ROW_PARTS:
        rows: dict[str, Row] = getattr(parts, part)
        rows.update(ops.set_rows.get(part, {}))
        for row_id in ops.delete_rows.get(part, ()):
            rows.pop(row_id, None)
    parts.seen.extend(ops.append_seen)
    if ops.keep_seen is not None:
        parts.seen[:] = parts.seen[-ops.keep_seen :]  # [-0:] keeps all, as LTRIM -0 -1 does


def stored_snapshot(
    meta: Mapping[str, Any],
    agents: dict[str, Row],
    buyers: dict[str, Row],
    seen: list[str],
) -> dict[str, Any]:
    """The snapshot (`dump_shop` form) that stored parts hold; the rows and the seen list
    are used as they are, not copied. KeyError if `meta` lacks a field of `META_FIELDS`."""
    snapshot = {name: meta[name] for name in META_FIELDS}
    snapshot.update((name, value) for name, value in meta.items() if name not in snapshot)
    snapshot["agents"] = agents
    snapshot["buyers"] = buyers
    snapshot["seen"] = seen
    return snapshot


def apply_delta(data: dict[str, Any], delta: ShopDelta, *, dedup_capacity: int) -> None:
    """Bring a snapshot (`dump_shop` form, changed in place; empty: nothing stored yet) up
    to date with `delta`, as a store does: `delta_ops` applied by `apply_ops` to the
    snapshot's parts, read back by `stored_snapshot`."""
    parts = StoredParts(
        meta={name: value for name, value in data.items() if name not in _NOT_META} or None,
        agents=data.get("agents", {}),
        buyers=data.get("buyers", {}),
        seen=list(data.get("seen", [])),
    )
    apply_ops(parts, delta_ops(delta, dedup_capacity=dedup_capacity))
    assert parts.meta is not None
    snapshot = stored_snapshot(parts.meta, parts.agents, parts.buyers, parts.seen)
    data.clear()
    data.update(snapshot)


def load_shop(
    config: ShopConfig,
    data: dict[str, Any],
    *,
    dedup_capacity: int,
    track: bool = False,
    oracle: Mapping[str, float] | None = None,
) -> ShopEngine:
    """A shop engine for `config` in the state `dump_shop` recorded (rows in any order);
    `oracle` is the policy lab's, as for `ShopEngine`."""
    if data.get("shop_id") != config.id:
        raise SnapshotError(f"snapshot is of shop {data.get('shop_id')!r}, not {config.id!r}")
    shop_format: Any = data.get("format")
    if shop_format not in READS:
        raise SnapshotError(
            f"stored in checkpoint format {shop_format!r}, which this Fenliu (format {FORMAT}) "
            "does not read: a newer version wrote it; left as stored for a version that does"
        )
    shop = ShopEngine(config, dedup_capacity=dedup_capacity, track=track, oracle=oracle)
    shop.now, shop.seq = data["now"], data["seq"]
    shop.state.stored_format = int(shop_format)
    shop.state.kept = {name: v for name, v in data.items() if name not in _KNOWN_META}
    agents: dict[str, AgentState] = {}
    shop.state.agents = agents
    for row in sorted(data["agents"].values(), key=lambda row: int(row["ordinal"])):
        agent = _load_agent(row)
        agents[agent.id] = agent
    ends: list[tuple[int, str]] = []
    for row in data["buyers"].values():
        buyer = _load_buyer(row, shop.now)
        shop.buyers[buyer.id] = buyer
        if buyer.last is not None:
            ends.append((buyer.last.ended_at, buyer.id))
    _index_sessions(shop)
    experiments = shop.state.experiments
    experiments.restore(data.get("experiments", {}))
    experiments.configure(config.experiment, shop.now, config.sticky_window)
    shop.rebuild(data["candidates"])
    for buyer in shop.buyers.values():
        entry = buyer.queued
        if entry is not None:
            cand = shop.candidate(entry.cand)
            if cand is None:
                raise SnapshotError(f"buyer {buyer.id!r} is queued in unknown group {entry.cand!r}")
            cand.line.add(entry.item(buyer.id, config.queue.priority_aging))
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
    for name in _PROFILE_FIELDS:  # as [bin, weight] pairs: JSON keys are text
        row[name] = sorted([b, w] for b, w in getattr(agent, name).items())
    return _stamped(row, agent.kept)


def _load_agent(row: dict[str, Any]) -> AgentState:
    agent = AgentState(row["id"], row["ordinal"], AgentStatus(row["status"]))
    agent.kept = _unknown(row, _AGENT_KEYS)
    agent.sessions = dict.fromkeys(row["sessions"])
    for name in _AGENT_FIELDS:
        if name in row:  # a row written before a field existed keeps the default
            setattr(agent, name, dict(row[name]) if name in _DICT_FIELDS else row[name])
    for name in _PROFILE_FIELDS:
        setattr(agent, name, {int(b): float(w) for b, w in row.get(name, ())})
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
        row["reply"] = [s.waiting_since, s.answered, s.moved, s.opened_at]
    if (q := buyer.queued) is not None:
        ctx = q.context
        row["queued"] = [
            q.inquiry_id, q.cand, q.priority, q.arrival, q.seq, q.entered_at,
            [list(ctx.crowd), ctx.item_id, ctx.intent, ctx.order_status],
            q.updates, q.last_position, q.last_estimate, q.last_eta,
        ]  # fmt: skip
    if (last := buyer.last) is not None:
        row["last"] = [last.agent_id, last.cand, last.ended_at, last.converted]
        if last.opened_at >= 0:
            row["last_opened"] = [last.ended_at, last.opened_at]
    if buyer.silent is not None:
        row["silent"] = list(buyer.silent)
    return _stamped(row, buyer.kept)


def _load_buyer(row: dict[str, Any], now: int) -> Buyer:
    buyer = Buyer(row["id"], BuyerPhase(row["phase"]))
    buyer.kept = _unknown(row, _BUYER_KEYS)
    if "session" in row:
        buyer.session = s = Session(*row["session"])
        s.opened_at = s.started_at
        if row.get("format", 2) >= REPLY_SINCE and "reply" in row:
            s.waiting_since, s.answered, *more = row["reply"]
            s.moved = bool(more and more[0])
            if len(more) > 1:
                s.opened_at = int(more[1])
        else:  # written before reply clocks, or rewritten by a version without them
            s.waiting_since = now if s.buyer_waiting else 0
            s.answered = s.last_agent_at > s.started_at
    if "queued" in row:
        q = row["queued"]
        crowd, item_id, intent, status = q[6]
        ctx = InquiryContext(tuple(crowd), item_id, intent, status)
        eta = q[10] if len(q) > 10 else 0  # rows written before the ETA was kept
        buyer.queued = QueueEntry(q[0], q[1], q[2], q[3], q[4], q[5], ctx, q[7], q[8], q[9], eta)
    if isinstance(silent := row.get("silent"), list) and len(silent) == 2:
        buyer.silent = (str(silent[0]), int(silent[1]))
    if "last" in row:
        buyer.last = last = LastContact(*row["last"][:4])
        opened = row.get("last_opened")  # of this very end, or stale: not known
        if isinstance(opened, list) and len(opened) == 2 and opened[0] == last.ended_at:
            last.opened_at = int(opened[1])
    return buyer


def _stamped(row: Row, kept: Row | None) -> Row:
    """`row` as stored: with this version's format, after the fields kept from a newer one."""
    row["format"] = FORMAT
    return {**kept, **row} if kept else row


def _unknown(row: Row, known: frozenset[str]) -> Row | None:
    """The fields of a stored row this version does not know (None when there are none); a
    row's `format` must be a format number (a row without one is format 2)."""
    row_format = row.get("format", 2)
    if type(row_format) is not int or row_format < 2:
        raise SnapshotError(f"row {row.get('id')!r} has format {row_format!r}")
    if row.keys() <= known:
        return None
    return {name: value for name, value in row.items() if name not in known}
