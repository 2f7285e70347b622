"""`fenliu experiment report`: a shop's grey tests from its checkpoint in Redis (contract §3.7, 8).

    fenliu experiment report --config fenliu.toml --shop ID [--json]

reads the shop's meta part (daemon.core.snapshot) from the Redis of fenliu.toml's `[redis]`,
under its `key_prefix`, without claiming the shop: the daemon need not run, and a running one
goes on undisturbed. That part holds the running experiment's figures and the finished ones
still kept (at least `sticky_window` after they ended), as of the shop's last checkpoint; the
daemon checkpoints after every batch, so they are as fresh as the API's.

It prints, for a person, a table per experiment — the running one, then the finished ones,
the latest first — with each arm's policy, share of buyers, buyers, sessions, conversion and
uplift over control in points (relative beside it) with their always-valid 95% intervals,
p95 wait, replies within the deadline and whether a guardrail stopped it, then each stop's
reason. With `--json`, the figures of `daemon.core.experiment.report` as `GET
/api/shops/{id}/experiment` answers them: `{"id", "at", "running", "finished"}`
(daemon.core.view.experiments_view; finished oldest first).

Exit 0 when printed; 1 when Redis did not answer, or the shop has no checkpoint or never ran
an experiment (stderr says which); 2 for bad arguments or configuration.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from daemon.config import FenliuConfig, load_config_or_report
from daemon.core.engine import DEFAULT_DEDUP_CAPACITY
from daemon.core.experiment import CONTROL, Experiments, share_text, uplift_text, wait_text
from daemon.core.view import experiments_view
from daemon.service.clients import make_redis
from daemon.service.store import Store, StoreError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
COMMAND = "fenliu experiment report"


class ReportError(Exception):
    """The report could not be had; the message says why, for a person."""


async def read_experiments(config: FenliuConfig, shop_id: str) -> dict[str, Any]:
    """The shop's grey tests as `experiments_view` gives them, from its stored checkpoint
    (ReportError when there is none to read)."""
    client = make_redis(config.redis)
    try:
        store = Store(client, config.redis.key_prefix, dedup_capacity=DEFAULT_DEDUP_CAPACITY)
        stored = await store.read_meta(shop_id)
    except StoreError as exc:
        raise ReportError(f"{exc} (Redis {config.redis.redacted_url})") from exc
    finally:
        await client.aclose()
    where = f"key {config.redis.key_prefix}:{{{shop_id}}}:meta in {config.redis.redacted_url}"
    if stored is None:
        configured = "" if shop_id in config.shop_configs else ", and no shop file names it"
        raise ReportError(
            f"shop {shop_id!r} has no checkpoint ({where}): no daemon has served it with this "
            f"[redis] url and key_prefix{configured}"
        )
    found = stored.get("experiments")
    if not found or (found.get("running") is None and not found.get("finished")):
        raise ReportError(
            f"shop {shop_id!r} has run no experiment (its checkpoint, {where}, holds none): "
            "add [experiment] to its shop file (contract §3.7)"
        )
    experiments = Experiments()
    try:
        experiments.restore(found)
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"shop {shop_id!r}: its stored experiments do not read: {exc}") from exc
    return experiments_view(shop_id, experiments, int(stored.get("now", 0)))


def render(view: dict[str, Any]) -> str:
    """The text for a person: a table per experiment, the running one first (module
    docstring)."""
    reports = [(r, "running") for r in [view["running"]] if r is not None]
    reports += [(r, "finished") for r in reversed(view["finished"])]
    parts = [
        f"shop {view['id']}: {len(reports)} experiment(s), as of its last checkpoint "
        f"({_time(view['at'])})"
    ]
    parts += [_experiment(r, state) for r, state in reports]
    if reports:
        parts.append(f"Intervals: {reports[0][0]['method']}.")
    return "\n\n".join(parts)


def _experiment(report: dict[str, Any], state: str) -> str:
    """One experiment: its heading, its table of arms, and why each stopped arm stopped."""
    started = report["started_at"]
    when = f"started {_time(started)}" if started else "not started (no buyer yet)"
    if report["ended_at"] is not None:
        when += f", ended {_time(report['ended_at'])}"
    rails = ", ".join(f"{k} {v}" for k, v in report["guardrails"].items()) or "none"
    head = [
        "arm", "policy", "split", "buyers", "sessions", "conversion [95%]",
        "uplift pp [95%] (relative)", "p95 wait [95%]", "replies in time [95%]", "status",
    ]  # fmt: skip
    rows = [head]
    stops = []
    for arm in report["arms"]:
        stop = arm["stopped"]
        rows.append([
            arm["arm"], arm["policy"], f"{arm['split']}%", f"{arm['buyers']:,}",
            f"{arm['sessions']:,}", share_text(arm["conversion"]), uplift_text(arm["uplift"]),
            wait_text(arm["p95_wait_s"]), share_text(arm["replies_within_deadline"]),
            ("running" if state == "running" else "ended") if stop is None else "stopped",
        ])  # fmt: skip
        if stop is not None:
            stops.append(
                f"  {arm['arm']} stopped by guardrail {stop['guardrail']} at {_time(stop['at'])} "
                f"(its buyers get {CONTROL}'s policy since, and are still counted): {stop['why']}"
            )
    lines = [
        f"experiment {report['name']} ({state}): {when}",
        f"  guardrails: {rails}",
        "",
        *_table(rows, left={0, 1, 9}),
    ]
    if stops:
        lines += ["", *stops]
    return "\n".join(lines)


def _table(rows: list[list[str]], left: set[int]) -> list[str]:
    """Rows as aligned columns (the columns in `left` to the left, the others right)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(
            cell.ljust(w) if i in left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]  # fmt: skip


def _time(ms: int) -> str:
    """Epoch milliseconds as a UTC time for a person."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def report_command(config_path: Path, shop_id: str, *, as_json: bool) -> int:
    """`fenliu experiment report`: the report on stdout; problems on stderr."""
    config = load_config_or_report(config_path)
    if config is None:
        return EXIT_USAGE
    try:
        view = asyncio.run(read_experiments(config, shop_id))
    except ReportError as exc:
        print(f"{COMMAND}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if as_json:
        sys.stdout.write(orjson.dumps(view, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(view))
    return EXIT_OK
