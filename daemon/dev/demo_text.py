"""How `fenliu demo` words what the engine decides: times in the shop's zone, one line per
decision, and the tables of agents and groups at the end (daemon.dev.demo runs the scenario).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

from rich.console import Console
from rich.table import Table
from rich.text import Text

from daemon.core.config import ShopConfig
from daemon.core.shop import ShopEngine
from topics.events import AgentStatus, Assignment, QueueStatus, QueueUpdate, SessionClosed

TZ = timezone(timedelta(hours=8), "UTC+8")

_STYLE = {
    "routed": "green",
    "dequeued": "green",
    "sticky": "cyan",
    "repeat_entry": "cyan",
    "active_session": "cyan",
    "transfer": "magenta",
}


def clock(ts: int) -> str:
    """Wall-clock time of a virtual timestamp, in the shop's time zone."""
    return f"{datetime.fromtimestamp(ts / 1000, TZ):%H:%M:%S}"


def plural(n: int, word: str) -> str:
    """`n` and the word, with an s unless n is 1."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def span(ms: int) -> str:
    """A duration in words: seconds under a minute, else minutes."""
    return f"{ms // 1000}s" if ms < 60_000 else f"{ms // 60_000} min"


def describe(out: Assignment | SessionClosed | QueueUpdate) -> Text:
    """What a decision says, in a few words."""
    if isinstance(out, Assignment):
        where = "/".join(x for x in (out.group, out.mode.value if out.mode else None) if x)
        waited = f", waited {out.waited_ms // 1000}s" if out.waited_ms else ""
        return Text.assemble(
            (f"{out.reason.value:<14}", _STYLE.get(out.reason.value, "")),
            f" {out.agent_id:<9} {where}{waited}",
        )
    if isinstance(out, SessionClosed):
        return Text(f"{'closed':<14} {out.agent_id:<9} {out.reason.value}", style="dim")
    group = out.group or "unmatched pool"
    if out.status in (QueueStatus.QUEUED, QueueStatus.WAITING):
        return Text(
            f"{out.status.value:<14} #{out.position} in {group}, ~{out.estimated_wait_s}s",
            style="yellow",
        )
    return Text(
        f"{'left line' if out.status is QueueStatus.LEFT else out.status.value:<14} {group}",
        style="yellow",
    )


def print_summary(
    console: Console,
    config: ShopConfig,
    shop: ShopEngine,
    assigned: Counter[str],
    tally: Counter[str],
) -> None:
    """Per agent: assignments, load, status; per group: mode, online, queued; then the tally
    of decisions (`assigned` counts assignments by agent, `tally` decisions by kind)."""
    agents = Table(title="Agents at the end", title_justify="left")
    for column in ("agent", "groups", "status", "load", "assignments"):
        agents.add_column(column, justify="right" if column in ("load", "assignments") else "left")
    for conf in config.agents:
        state = shop.agents[conf.id]
        member_of = ", ".join(g.name for g in config.groups if conf.id in g.agents)
        agents.add_row(
            conf.id, member_of, state.status.value, str(state.load), str(assigned[conf.id])
        )
    groups = Table(title="Groups at the end", title_justify="left")
    for column in ("group", "mode", "online", "queued"):
        groups.add_column(column)
    for cand in shop.all_candidates():
        online = sum(1 for a in cand.caps if shop.agents[a].status is AgentStatus.ONLINE)
        name = cand.group or "unmatched pool"
        groups.add_row(
            name, cand.mode.value, f"{online}/{len(cand.caps)}", str(len(cand.line.items))
        )
    console.print()
    console.print(agents)
    console.print(groups)
    for heading in ("assignment", "closed", "queue"):
        counts = [(k.split(" ", 1)[1], v) for k, v in tally.items() if k.startswith(heading)]
        if counts:
            text = f"{heading}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts))
            console.print(text, soft_wrap=True)
    if tally["rejected"]:
        console.print(f"rejected: {tally['rejected']}")
