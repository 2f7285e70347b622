"""The live view of `fenliu dev`: output events and /metrics, drawn with rich."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families
from rich import box
from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from daemon.core.config import ShopConfig
from daemon.dev.traffic import Traffic
from daemon.service.clock import wall_ms
from topics.events import (
    AgentStatus,
    Assignment,
    AssignReason,
    CloseReason,
    Mode,
    OutputEvent,
    QueueStatus,
    QueueUpdate,
    Rejected,
    SessionClosed,
)

RATE_WINDOW_MS = 10_000  # assignments per second are counted over this window
HTTP_TIMEOUT_S = 1.0


async def http_get(address: str, path: str) -> str | None:
    """The body of GET http://address/path, or None when nobody answers in time."""
    host, port = address.rsplit(":", 1)
    try:
        async with asyncio.timeout(HTTP_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
            answer = await reader.read()
            writer.close()
    except (OSError, TimeoutError):
        return None
    head, _, body = answer.partition(b"\r\n\r\n")
    return body.decode() if head.startswith(b"HTTP/1.1 200") else None


# ------------------------------------------------------------------------------- the view


def decode_output(value: bytes | None) -> OutputEvent | None:
    """An output record as its event; None for anything unreadable (the view only shows)."""
    try:
        o: dict[str, Any] = orjson.loads(value or b"")
        head = (o["id"], o["shop_id"], o["ts"])
        match o["type"]:
            case "assignment":
                mode = Mode(o["mode"]) if o["mode"] else None
                return Assignment(
                    *head, o["inquiry_id"], o["buyer_id"], o["agent_id"], o["group"],
                    AssignReason(o["reason"]), mode, o["waited_ms"], o.get("config", ""),
                )  # fmt: skip
            case "session_closed":
                reason = CloseReason(o["reason"])
                config = o.get("config", "")
                return SessionClosed(*head, o["buyer_id"], o["agent_id"], reason, config)
            case "queue_update":
                return QueueUpdate(
                    *head, o["inquiry_id"], o["buyer_id"], o["group"], QueueStatus(o["status"]),
                    o.get("position"), o.get("estimated_wait_s"), o.get("config", ""),
                )  # fmt: skip
            case "rejected":
                where = (o["source_topic"], o["partition"], o["offset"])
                encoding = o.get("raw_encoding", "utf-8")
                return Rejected(
                    *head, o["error"], *where, o["raw"], encoding, o.get("reason")
                )  # fmt: skip
    except (ValueError, KeyError, TypeError):
        pass
    return None


_SCRAPED = (
    "fenliu_queue_length",
    "fenliu_queue_oldest_wait_seconds",
    "fenliu_agent_open_sessions",
    "fenliu_agent_pending",
)
_STATUS_STYLE = {
    AgentStatus.ONLINE: ("●", "green"),
    AgentStatus.SUSPENDED: ("◐", "yellow"),
    AgentStatus.OFFLINE: ("○", "red"),
}


@dataclass(frozen=True, slots=True)
class _Line:
    """One decision in the view's log."""

    ts: int
    what: str
    buyer: str
    agent: str
    detail: str
    style: str


class Monitor:
    """What the view shows: decisions from the output topics, state from /metrics."""

    def __init__(self, shop: ShopConfig, traffic: Traffic, http: str) -> None:
        self.shop, self.traffic, self.http = shop, traffic, http
        self.assigned: Counter[str] = Counter()
        self.queue: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        self.rejected = 0
        self.recent: deque[tuple[int, str]] = deque()  # (ts, reason) of recent assignments
        self.lines: deque[_Line] = deque(maxlen=10)
        self.queues: dict[str, tuple[int, float]] = {}  # group -> (length, oldest wait s)
        self.agents: dict[str, tuple[int, int]] = {}  # agent -> (open sessions, pending)
        self.stopping = False

    def observe(self, event: OutputEvent) -> None:
        """Count and log one decision."""
        if isinstance(event, Assignment):
            self.assigned[event.reason.value] += 1
            self.recent.append((event.ts, event.reason.value))
            where = "/".join(x for x in (event.group, event.mode and event.mode.value) if x)
            waited = f", waited {event.waited_ms / 1000:.0f}s" if event.waited_ms else ""
            what, buyer, agent = event.reason.value, event.buyer_id, event.agent_id
            self._log(event.ts, what, buyer, agent, where + waited, "green")
        elif isinstance(event, SessionClosed):
            self.closed[event.reason.value] += 1
            self._log(event.ts, "closed", event.buyer_id, event.agent_id, event.reason.value, "dim")
        elif isinstance(event, QueueUpdate):
            status = event.status
            self.queue[status.value] += 1
            if status not in (QueueStatus.WAITING, QueueStatus.DEQUEUED):  # the noisy ones
                place = f"#{event.position}, ~{event.estimated_wait_s}s" if event.position else ""
                group = event.group or "unmatched pool"
                self._log(event.ts, status.value, event.buyer_id, "", f"{group} {place}", "yellow")
        else:
            self.rejected += 1
            self._log(event.ts, "rejected", "", "", event.error, "red")

    def _log(self, ts: int, what: str, buyer: str, agent: str, detail: str, style: str) -> None:
        self.lines.append(_Line(ts, what, buyer, agent, detail, style))

    def scrape(self, text: str) -> None:
        """Queue lengths and agent loads from the daemon's /metrics."""
        found: dict[str, dict[str, float]] = {name: {} for name in _SCRAPED}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name in found and labels.get("shop") == self.shop.id:
                    key = labels.get("group") or labels.get("agent") or ""
                    found[sample.name][key] = sample.value
        lengths, oldest, loads, pending = (found[name] for name in _SCRAPED)
        self.queues = {g: (int(n), oldest.get(g, 0.0)) for g, n in lengths.items()}
        self.agents = {a: (int(n), int(pending.get(a, 0))) for a, n in loads.items()}

    # ----------------------------------------------------------------------- rendering

    def render(self, elapsed: float, console: Console) -> RenderableType:
        """The whole live view."""
        now = wall_ms()
        while self.recent and self.recent[0][0] < now - RATE_WINDOW_MS:
            self.recent.popleft()
        state = "stopping…" if self.stopping else "Ctrl-C stops"
        head = Text.assemble(
            ("Fenliu dev", "bold"),
            f" · shop {self.shop.id} · {elapsed:.0f}s · {self.traffic.settings.rate:g} buyers/s"
            f" · console http://{self.http}/ · {state}\n",
            (self._traffic_line(), "dim"),
        )
        top = Table.grid(padding=(0, 4))
        top.add_row(self._queue_table(), self._rate_table())
        above = Group(head, top, self._agent_cells())
        used = len(console.render_lines(above, console.options, pad=False))
        rows = max(3, min(len(self.lines), console.height - used - 5))  # the rest, to 10
        return Group(above, self._decision_table(rows))

    def _traffic_line(self) -> str:
        s = self.traffic.stats
        return (
            f"simulated: {s['buyers']} buyers, {s['MessageSent']} messages, "
            f"{s['OrderPlaced']} orders, {s['SessionTransferred']} transfers, "
            f"{s['BuyerLeft']} gave up waiting, {s['AgentStatusChanged']} agent status changes"
        )

    def _queue_table(self) -> Table:
        table = _table("Queues", "group", "mode", "online", "queued", "oldest")
        status = self.traffic.agent_status
        rows = [(g.name, g.name, g.mode or self.shop.mode, g.agents) for g in self.shop.groups]
        if "(pool)" in self.queues:  # several groups take unmatched buyers: one shared line
            pooled = tuple(a for g in self.shop.groups if g.accept_unmatched for a in g.agents)
            rows.append(("(pool)", "unmatched pool", self.shop.mode, pooled))
        for label, name, mode, members in rows:
            length, oldest = self.queues.get(label, (0, 0.0))
            online = sum(status[a] is AgentStatus.ONLINE for a in set(members))
            style = "yellow" if length else ""
            wait = f"{oldest:.0f}s" if length else "-"
            online_of = f"{online}/{len(set(members))}"
            table.add_row(name, mode.value, online_of, Text(str(length), style), wait)
        return table

    def _rate_table(self) -> Table:
        table = _table("Assignments (last 10 s)", "reason", "per s", "total")
        window = Counter(reason for _, reason in self.recent)
        for reason in AssignReason:
            n = window[reason.value]
            style = "" if n or self.assigned[reason.value] else "dim"
            table.add_row(
                reason.value,
                f"{n / (RATE_WINDOW_MS / 1000):.1f}",
                str(self.assigned[reason.value]),
                style=style,
            )
        return table

    def _agent_cells(self) -> RenderableType:
        cells = []
        for agent in self.shop.agents:
            mark, style = _STATUS_STYLE[self.traffic.agent_status[agent.id]]
            load, pending = self.agents.get(agent.id, (0, 0))
            busy = "bold red" if pending > self.shop.busy_threshold else ""
            cells.append(
                Text.assemble(
                    (f"{mark} ", style),
                    f"{agent.id:<9}{load:>2}{self._cap(agent.id)} ",
                    (f"p{pending}", busy),
                )
            )
        legend = "Agents  ● online ◐ suspended ○ offline · open sessions/cap · p = owed replies"
        return Group(Text(legend, style="italic"), Columns(cells, padding=(0, 3)))

    def _cap(self, agent_id: str) -> str:
        """ "/cap" (the agent's own, else its first group's, else the shop's); "" without caps."""
        if not self.shop.queue.enabled:
            return "   "
        agent = next(a for a in self.shop.agents if a.id == agent_id)
        group_caps = [g.cap for g in self.shop.groups if agent_id in g.agents and g.cap]
        cap = agent.cap or (group_caps[0] if group_caps else self.shop.queue.default_cap)
        return f"/{cap:<2}"

    def _decision_table(self, rows: int) -> Table:
        table = _table("Last decisions", "time", "decision", "buyer", "agent", "detail")
        for line in list(reversed(self.lines))[:rows]:
            clock = f"{datetime.fromtimestamp(line.ts / 1000).astimezone():%H:%M:%S}"
            table.add_row(clock, Text(line.what, line.style), line.buyer, line.agent, line.detail)
        return table

    # ----------------------------------------------------------------- plain text lines

    def progress(self, elapsed: float) -> str:
        """One line: how the run is going."""
        waiting = sum(length for length, _ in self.queues.values())
        return (
            f"[{elapsed:4.0f}s] buyers {self.traffic.stats['buyers']}"
            f" | assigned {sum(self.assigned.values())} ({_counts(self.assigned)})"
            f" | waiting {waiting} | left {self.queue['left']} | expired {self.queue['expired']}"
            f" | closed {sum(self.closed.values())} | rejected {self.rejected}"
        )

    def summary(self, elapsed: float, rate: float, seed: int) -> list[str]:
        """The end-of-run summary."""
        q, s = self.queue, self.traffic.stats
        return [
            f"Summary: {elapsed:.0f} s of traffic, shop {self.shop.id}, "
            f"arrival rate {rate:g}/s, seed {seed}",
            f"  simulated    {s['buyers']} buyers, {s['BuyerInquired']} inquiries, "
            f"{s['MessageSent']} messages, {s['OrderPlaced']} orders, "
            f"{s['SessionTransferred']} transfers, {s['AgentStatusChanged']} agent status changes",
            f"  assignments  {sum(self.assigned.values())}: {_counts(self.assigned)}",
            f"  queue        queued {q['queued']}, served {q['dequeued']}, left {q['left']}, "
            f"expired {q['expired']}",
            f"  closed       {sum(self.closed.values())}: {_counts(self.closed)}",
            f"  rejected     {self.rejected}",
        ]


def _table(title: str, *columns: str) -> Table:
    return Table(*columns, title=title, title_justify="left", box=box.SIMPLE_HEAD)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {n}" for k, n in counter.most_common()) or "none"
