"""What a supervisor sees of a shop right now, as plain JSON-able data (contract §8's JSON API).

Read-only views of a `ShopEngine`, for the daemon's `/api/shops` (`shop_summary`) and
`/api/shops/{id}` (`shop_view`); the caller supplies `now` (epoch ms) and calls them between
engine steps, never while the engine runs (daemon.service.views builds them in the loop).

    shop_summary -> {"id", "agents_online", "open_sessions", "queued", "oldest_wait_s"}
    shop_view    -> {"id", "mode", "config", "at",
                     "agents": [{"id", "status", "groups", "open_sessions", "cap",
                                 "pending_replies", "oldest_owed_s", "past_warn",
                                 "overdue", "busy", "suspended"}],
                     "queues": [{"group", "buyers": [{"buyer_id", "inquiry_id", "position",
                                                      "priority", "waited_s",
                                                      "estimated_wait_s"}]}],
                     "replies": reply_figures(...),
                     "experiment": report(running) or null}
    experiments_view -> {"id", "at", "running": report or null, "finished": [report, ...]}
    reply_figures -> {"deadline_s", "warn_after_s",
                      "groups": [{"group", "replies_last_hour", "within_deadline_last_hour",
                                  "share_within_deadline", "overdue", "reassigned",
                                  "reply_seconds": {"le", "counts", "sum", "count"}}]}

`config` is the version of the shop file in force, the one its outputs carry. An agent's
`cap` is the lowest of its caps where queueing applies (contract §2: its own, else its
group's, else the shop's default), null where queueing applies to none of its groups.
`pending_replies` counts the buyers owed a reply; `oldest_owed_s` is how long the longest
of their reply clocks has run (null when none runs), `past_warn` how many have run at least
`[replies] warn_after`, `overdue` how many have run the `deadline` (contract §3.6). `busy`
is the agent's busyness as routing reads it (contract §3.4: pending replies above
`busy_threshold`, or, with `overdue_is_busy`, an overdue buyer). A queue is one line of
buyers: one per group, and one (group null) for the pool of `accept_unmatched` groups;
buyers in the order they will be served. `waited_s` counts from arrival (kept when a buyer
overflows to another group); `estimated_wait_s` is the estimate last announced in a
`queue_update`, null before any.

`reply_figures` are each group's reply figures (daemon/core/replies.py), in the order of
the shop file: replies in the minute of `now` and the 59 before and those within the
deadline, their share (null without replies), buyers overdue now, buyers moved to another
agent by reason, and the distribution of all reply times as Prometheus reads a histogram:
bucket bounds in seconds (`le`, the last +Inf as null), cumulative counts, sum in seconds.

`experiment` is the shop's running grey test (contract §3.7) as `daemon.core.experiment.report`
gives it (per arm its counts, conversion and uplift over control with always-valid intervals,
p95 wait, replies within the deadline, and the guardrail's stop), null when none runs;
`experiments_view` adds the finished ones still kept (at least `sticky_window` after they
ended, oldest first), for `GET /api/shops/{id}/experiment` and `fenliu experiment report`.
"""

from __future__ import annotations

from typing import Any

from daemon.core.candidate import Candidate
from daemon.core.experiment import Experiments, report
from daemon.core.model import AgentState
from daemon.core.replies import REASSIGN_REASONS, REPLY_BUCKETS_MS
from daemon.core.shop import ShopEngine
from topics.events import AgentStatus


def shop_summary(shop: ShopEngine, now: int) -> dict[str, Any]:
    """One line of `/api/shops`: agents online, open sessions, queued buyers, oldest wait."""
    agents = shop.agents.values()
    arrivals = [item.arrival for cand in shop.all_candidates() for item in cand.line.items]
    oldest = max(0, now - min(arrivals)) if arrivals else 0
    return {
        "id": shop.config.id,
        "agents_online": sum(1 for a in agents if a.status is AgentStatus.ONLINE),
        "open_sessions": sum(a.load for a in agents),
        "queued": len(arrivals),
        "oldest_wait_s": round(oldest / 1000, 1),
    }


def shop_view(shop: ShopEngine, now: int) -> dict[str, Any]:
    """The agents and queues of one shop (module docstring)."""
    running = shop.state.experiments.running
    return {
        "id": shop.config.id,
        "mode": shop.config.mode.value,
        "config": shop.config.version,  # what outputs carry as `config` (contract §1.3)
        "at": now,
        "agents": [_agent(shop, agent, now) for agent in shop.agents.values()],
        "queues": [_queue(shop, cand, now) for cand in shop.all_candidates()],
        "replies": reply_figures(shop, now),
        "experiment": None if running is None else report(running),
    }


def experiments_view(shop_id: str, experiments: Experiments, now: int) -> dict[str, Any]:
    """A shop's grey tests, the running one and the finished ones kept (module docstring)."""
    running = experiments.running
    return {
        "id": shop_id,
        "at": now,
        "running": None if running is None else report(running),
        "finished": [report(exp) for exp in experiments.finished],
    }


def reply_figures(shop: ShopEngine, now: int) -> dict[str, Any]:
    """Each group's reply figures (module docstring)."""
    replies = shop.config.replies
    overdue = shop.sessions.overdue_by_group
    groups = []
    for group in shop.config.groups:
        cand = shop.routing.cands[group.name]
        figures = cand.replies
        last_hour, within = figures.last_hour(now)
        cumulative = figures.cumulative()
        groups.append(
            {
                "group": group.name,
                "replies_last_hour": last_hour,
                "within_deadline_last_hour": within,
                "share_within_deadline": round(within / last_hour, 4) if last_hour else None,
                "overdue": overdue.get(group.name, 0),
                "reassigned": {r: figures.reassigned.get(r, 0) for r in REASSIGN_REASONS},
                "reply_seconds": {
                    "le": [bound / 1000 for bound in REPLY_BUCKETS_MS] + [None],
                    "counts": cumulative,
                    "sum": figures.hist_sum_ms / 1000,
                    "count": cumulative[-1],
                },
            }
        )
    return {
        "deadline_s": replies.deadline / 1000,
        "warn_after_s": replies.warn_after / 1000,
        "groups": groups,
    }


def _agent(shop: ShopEngine, agent: AgentState, now: int) -> dict[str, Any]:
    caps = [c.caps[agent.id] for c in shop.routing.of_agent(agent.id)]
    applied = [cap for cap in caps if cap is not None]
    clocks = [
        now - s.waiting_since
        for b in agent.sessions
        if (s := shop.buyers[b].session) is not None and s.buyer_waiting
    ]
    warn_after = shop.config.replies.warn_after
    return {
        "id": agent.id,
        "status": agent.status.value,
        "groups": [g.name for g in shop.config.groups if agent.id in g.agents],
        "open_sessions": agent.load,
        "cap": min(applied) if applied else None,
        "pending_replies": agent.pending,
        "oldest_owed_s": round(max(0, *clocks) / 1000, 1) if clocks else None,
        "past_warn": sum(1 for ms in clocks if ms >= warn_after),
        "overdue": agent.overdue,
        "busy": agent.busy,
        "suspended": agent.status is AgentStatus.SUSPENDED,
    }


def _queue(shop: ShopEngine, cand: Candidate, now: int) -> dict[str, Any]:
    buyers = []
    for position, item in enumerate(cand.line.items, start=1):
        buyer_id = item.buyer_id
        entry = shop.buyers[buyer_id].queued
        if entry is None:  # not reachable: a queue holds queued buyers only
            continue
        buyers.append(
            {
                "buyer_id": buyer_id,
                "inquiry_id": entry.inquiry_id,
                "position": position,
                "priority": entry.priority,
                "waited_s": round(max(0, now - entry.arrival) / 1000, 1),
                "estimated_wait_s": entry.last_estimate if entry.last_estimate >= 0 else None,
            }
        )
    return {"group": cand.group, "buyers": buyers}
