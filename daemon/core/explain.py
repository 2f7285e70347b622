"""Why distribution between agents is uneven (分流不均怎么回事): `fenliu explain`.

`explain_shop(shop, now)` turns what the engine recorded about every agent into plain
JSON-able data; `render_table` prints it for a terminal. Nothing is guessed: each session an
agent received was booked with the rule and mode of its `assignment` and the group it was
chosen in (`AgentState.count_assignment`), so an agent's share of buyers splits exactly
into parts per rule — the parts sum to the share. Context comes next to it: online time
(the current stretch counted up to `now`; "online_vs_average" compares it with the mean of
the shop's agents), weight, level, caps and groups (the configuration and the candidates
built from it), sessions given while busy, observed conversion, and whether a candidate
the agent is chosen in uses conversion priority.

Shape of the result (shares are fractions of the shop's sessions, not percentages):

    {"shop_id", "now", "assignments", "online_ms", "rules": {rule: n},
     "groups": [{"name", "mode", "conversion_strength", "queueing", "agents",
                 "assignments", "observed_conversion"}],
     "agents": [{"id", "status", "load", "assignments", "share",
                 "by_rule": {rule: {"assignments", "share", "of_agent"}},
                 "by_group": {group: n}, "online_ms", "online_share", "online_vs_average",
                 "share_vs_online", "weight", "level", "cap", "caps", "groups",
                 "taken_unanswered", "busy_assignments", "busy_fraction", "sessions",
                 "converted_sessions",
                 "orders", "observed_conversion", "external_conversion",
                 "conversion_priority", "routing_rate", "why"}]}

`routing_rate` is the conversion rate conversion mode ranks the agent by, and where it
comes from (None when no candidate of the agent uses conversion mode): {"group" (the first
conversion-mode candidate it sits in; "" for the unmatched pool), "rate", "source"
("agent_stats": the shop's analytics figure, used as given; "observed": its converted
sessions shrunk toward the group mean), "sessions" and "converted_sessions" (what the
observed rate rests on), "group_mean" and "prior_strength" (the shrinkage: rate =
(converted + strength × mean) / (sessions + strength))}.

`taken_unanswered` counts the buyers moved away from the agent because it left their first
message unanswered for `[replies] reassign_after` (contract §3.6); they show in the "why".

A rule is the assignment's reason, with its mode when one was used: "routed/efficiency",
"dequeued/conversion", "sticky", "repeat_entry", "transfer". An `active_session`
assignment starts no session (the buyer keeps its agent), so it is not a share of buyers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from daemon.core.candidate import LEVEL_FACTOR, Candidate
from daemon.core.model import AgentState
from daemon.core.shop import ShopEngine
from topics.events import AgentStatus, Mode

_SOURCE_MARK = {"agent_stats": " a", "observed": " o"}
NOTABLE = 0.15  # a part of an agent's own buyers worth a word in its "why"
UNEVEN = 0.25  # online time this far from the average is worth a word

_RULE_WORDS = {
    "sticky": "{p} of its buyers came back to it (sticky)",
    "repeat_entry": "{p} returned within the repeat-entry window (repeat_entry)",
    "transfer": "{p} were transferred to it",
    "unanswered": "{p} were moved to it from agents who did not answer (unanswered)",
}


def online_ms(agent: AgentState, now: int) -> int:
    """Time spent online, the current stretch counted up to `now`."""
    if agent.status is AgentStatus.ONLINE and agent.online_since is not None:
        return agent.online_ms + max(0, now - agent.online_since)
    return agent.online_ms


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def explain_shop(shop: ShopEngine, now: int) -> dict[str, Any]:
    """Every agent's share of buyers and what made it (module docstring)."""
    agents = list(shop.agents.values())
    counts = {a.id: sum(a.assigned_by_rule.values()) for a in agents}
    total = sum(counts.values())
    online = {a.id: online_ms(a, now) for a in agents}
    online_total = sum(online.values())
    rules: dict[str, int] = {}
    for agent in agents:
        for rule, n in agent.assigned_by_rule.items():
            rules[rule] = rules.get(rule, 0) + n
    groups = _groups(shop)
    rows = [
        _agent_row(shop, a, counts[a.id], total, online[a.id], online_total, len(agents))
        for a in agents
    ]
    for row in rows:
        row["why"] = why(row)
    return {
        "shop_id": shop.config.id,
        "now": now,
        "assignments": total,
        "online_ms": online_total,
        "rules": dict(sorted(rules.items(), key=lambda kv: (-kv[1], kv[0]))),
        "groups": groups,
        "agents": rows,
    }


def _groups(shop: ShopEngine) -> list[dict[str, Any]]:
    out = []
    for group in shop.config.groups:
        cand = shop.routing.cands.get(group.name)
        states = [shop.agents[a] for a in group.agents if a in shop.agents]
        sessions = sum(a.sessions_total for a in states)
        mode = cand.mode if cand is not None else (group.mode or shop.config.mode)
        out.append(
            {
                "name": group.name,
                "mode": mode.value,
                "conversion_strength": group.conversion_strength,
                "queueing": bool(cand and cand.queueing),
                "agents": list(group.agents),
                "assignments": sum(a.assigned_by_group.get(group.name, 0) for a in states),
                "observed_conversion": _ratio(sum(a.converted_sessions for a in states), sessions),
            }
        )
    return out


def _agent_row(
    shop: ShopEngine,
    agent: AgentState,
    n: int,
    total: int,
    online: int,
    online_total: int,
    n_agents: int,
) -> dict[str, Any]:
    conf = shop.config.agent(agent.id)
    cands = shop.routing.of_agent(agent.id)
    share = n / total if total else 0.0
    online_share = _ratio(online, online_total)
    by_rule = {
        rule: {"assignments": c, "share": c / total, "of_agent": c / n}
        for rule, c in sorted(agent.assigned_by_rule.items(), key=lambda kv: (-kv[1], kv[0]))
    }
    return {
        "id": agent.id,
        "status": agent.status.value,
        "load": agent.load,
        "assignments": n,
        "share": share,
        "by_rule": by_rule,
        "by_group": dict(sorted(agent.assigned_by_group.items())),
        "online_ms": online,
        "online_share": online_share,
        "online_vs_average": _ratio(online * n_agents, online_total),
        "share_vs_online": _ratio(share, online_share or 0.0) if total else None,
        "weight": conf.weight if conf else None,
        "level": conf.level if conf else None,
        "cap": conf.cap if conf else None,
        "caps": {c.key: c.caps.get(agent.id) for c in cands if c.key},  # not the pool's
        "groups": [g.name for g in shop.config.groups if agent.id in g.agents],
        "taken_unanswered": agent.taken_unanswered,
        "busy_assignments": agent.assigned_while_busy,
        "busy_fraction": _ratio(agent.assigned_while_busy, n),
        "sessions": agent.sessions_total,
        "converted_sessions": agent.converted_sessions,
        "orders": agent.orders,
        "observed_conversion": _ratio(agent.converted_sessions, agent.sessions_total),
        "external_conversion": agent.external_rate,
        "conversion_priority": any(c.mode is Mode.CONVERSION for c in cands),
        "routing_rate": routing_rate(agent, cands),
    }


def routing_rate(agent: AgentState, cands: Sequence[Candidate]) -> dict[str, Any] | None:
    """The rate conversion mode ranks `agent` by, and its source (module docstring)."""
    conv = [c for c in cands if c.mode is Mode.CONVERSION]
    if not conv:
        return None
    cand = next((c for c in conv if c.group is not None), conv[0])
    return {
        "group": cand.key,
        "rate": cand.rate(agent),
        "source": "observed" if agent.external_rate is None else "agent_stats",
        "sessions": agent.sessions_total,
        "converted_sessions": agent.converted_sessions,
        "group_mean": cand.stats.prior_used,
        "prior_strength": cand.stats.prior_strength,
    }


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def why(row: dict[str, Any]) -> str:
    """A short sentence on what stands out in one agent's row (`explain_shop`'s "why")."""
    n = row["assignments"]
    if not n:
        return "no buyers yet" + ("" if row["online_ms"] else " (never online)")
    parts: list[str] = []
    ratio = row["share_vs_online"]
    if ratio is not None and abs(ratio - 1) >= UNEVEN:
        parts.append(f"{ratio:.1f}× its online-time share")
    vs_avg = row["online_vs_average"]
    if vs_avg is not None and abs(vs_avg - 1) >= UNEVEN:
        parts.append(f"online {vs_avg:.1f}× the average")
    by_rule: dict[str, dict[str, Any]] = row["by_rule"]
    for reason, words in _RULE_WORDS.items():  # a rule is its reason, with a mode or not
        of_agent = sum(
            part["of_agent"] for rule, part in by_rule.items() if rule.split("/")[0] == reason
        )
        if of_agent >= NOTABLE:
            parts.append(words.format(p=_pct(of_agent)))
    parts.extend(_routing_words(row, by_rule))
    if taken := row["taken_unanswered"]:
        parts.append(f"{taken} buyer(s) moved away for a first message it did not answer")
    busy = row["busy_fraction"] or 0.0
    if busy >= NOTABLE / 2:
        parts.append(f"{_pct(busy)} given while busy")
    if len(row["groups"]) > 1:
        parts.append(f"in {len(row['groups'])} groups ({', '.join(row['groups'])})")
    if not parts:
        if ratio is not None:
            return "share in line with its online time"
        main = max(by_rule, key=lambda r: by_rule[r]["assignments"])
        return f"mostly {main}"
    return "; ".join(parts)


def _rate_words(used: dict[str, Any] | None) -> str:
    """Where the rate came from, e.g. ' (observed 12 of 80 sessions, 17% toward group 16%)'."""
    if used is None:
        return ""
    if used["source"] == "agent_stats":
        return f" (analytics figure {_pct(used['rate'])})"
    return (
        f" (observed {used['converted_sessions']} of {used['sessions']} sessions, "
        f"{_pct(used['rate'])} toward group {_pct(used['group_mean'])})"
    )


def _routing_words(row: dict[str, Any], by_rule: dict[str, dict[str, Any]]) -> list[str]:
    parts = []
    conv = sum(v["of_agent"] for r, v in by_rule.items() if r.endswith("/conversion"))
    if conv >= NOTABLE:
        rate = _rate_words(row.get("routing_rate"))
        parts.append(f"{_pct(conv)} chosen by conversion priority{rate}")
        level = row["level"]
        if level not in (None, 3):
            parts.append(f"level {level} (×{LEVEL_FACTOR[level]:g} in conversion mode)")
    by_weight = any("/" in r and not r.endswith("/average") for r in by_rule)
    if by_weight and row["weight"] not in (None, 1.0):
        parts.append(f"weight {row['weight']:g}")
    queued = sum(v["of_agent"] for r, v in by_rule.items() if r.startswith("dequeued"))
    if queued >= 2 * NOTABLE:
        parts.append(f"{_pct(queued)} taken from the queue")
    return parts


# ------------------------------------------------------------------------------- table


def render_table(explanation: dict[str, Any]) -> str:
    """A plain-text table of `explain_shop`'s result, one line per agent, then the whys.

    Rule columns are parts of the shop's buyers: across a row they add up to "share".
    "conv" is the rate conversion mode uses ("a": an analytics figure, `agent_stats`; "o":
    observed, shrunk toward the group mean), else the observed rate.
    """
    rules = list(explanation.get("rules", {}))
    head = ["agent", "share", *rules, "online", "×avg", "busy", "conv", "w/lvl", "groups"]
    lines = [head]
    for row in explanation["agents"]:
        by_rule = row.get("by_rule", {})
        used = row.get("routing_rate")
        conv = used["rate"] if used else row.get("external_conversion")
        if conv is None:
            conv = row.get("observed_conversion")
        source = _SOURCE_MARK.get(used["source"], "") if used else ""
        lines.append(
            [
                str(row["id"]),
                _cell(row.get("share")),
                *(_cell(by_rule[r]["share"]) if r in by_rule else "-" for r in rules),
                _cell(row.get("online_share")),
                "-" if row.get("online_vs_average") is None else f"{row['online_vs_average']:.2f}",
                str(row.get("busy_assignments", 0)),
                _cell(conv) + source,
                f"{row.get('weight') or 1:g}/{row.get('level') or 3}",
                ",".join(row.get("groups", [])),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = [
        f"shop {explanation['shop_id']}: {explanation['assignments']} buyers given to "
        f"{len(explanation['agents'])} agents (rule columns add up to share)"
    ]
    for i, line in enumerate(lines):
        cells = [c.ljust(w) if j in (0, len(head) - 1) else c.rjust(w)
                 for j, (c, w) in enumerate(zip(line, widths, strict=True))]  # fmt: skip
        text.append("  ".join(cells).rstrip())
        if i == 0:
            text.append("  ".join("-" * w for w in widths))
    text.append("")
    text.extend(f"{row['id']}: {row.get('why', '')}" for row in explanation["agents"])
    return "\n".join(text) + "\n"


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"
