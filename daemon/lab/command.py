"""`fenliu simulate`: run a shop day under several policies, measure, explain, report.

    fenliu simulate --shop config/shops/big.toml --scenario double11 \\
        --mode efficiency --mode conversion:high --json out.json --report out/ [--explain] \\
        [--history 30d|none] [--ignored-first 0.05] [--days N]
    fenliu simulate --shop config/shops/presale.toml --scenario steady --days 7 \\
        --experiment control=efficiency,treatment=conversion:high [--split control=50,...] \\
        [--guardrails p95_wait=+20%,replies_within_deadline=-3pp|none]

Every policy runs on the same buyers and agents (common random numbers, `daemon.lab.world`),
so the table compares routing alone. The JSON holds every figure (`measures`) and the
explanation of every agent's share (`explain`, what `fenliu explain FILE` prints) per policy.
Every policy's measures carry its `oracle_share` (`daemon.lab.measures`): its part of the
oracle's uplift over efficiency. The two references are the policies `efficiency` and
`oracle`; those not asked for with `--mode` are run too, on the same buyers, shown in the
progress as references, and left out of the table, `--explain` and the report; the JSON
gives their key figures under `references` (`inquiries`, `headline`, `conversion`: what the
shares rest on). `--history 30d` (the default) first feeds the engine the shop's past as its
Redis would hold it (`daemon.lab.history`); `none` starts from nothing. `--ignored-first
SHARE` is the share of sessions whose first message the agent never answers (an agent away
without changing its status, `daemon.lab.world`; default 0); the table then says so.
`--days N` plays a one-day scenario N days in a row.

A grey test (contract §3.7, `daemon.lab.grey`) runs instead of the policies when
`--experiment` names its arms, or when the shop file has an `[experiment]` and no `--mode`
is given: one run, the shop's buyers split between the arms by the routing core, with no
references. After the usual table it prints the experiment's figures per arm, as
`daemon.core.experiment.report` gives them, beside the true conversion and uplift the world
knows; the JSON has them under `experiment` (with the looks every simulated hour). With
`--mode`, the shop file's `[experiment]` is left out: each policy then routes all buyers.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from daemon.config import ConfigError, load_shop_file
from daemon.core.config import ShopConfig
from daemon.core.experiment import share_text, uplift_text, wait_text
from daemon.core.explain import explain_shop, render_table
from daemon.lab.grey import LabExperiment, lab_experiment
from daemon.lab.measures import add_oracle_shares, estimate_points, measure
from daemon.lab.policy import AS_CONFIGURED, ORACLE, Policy, parse_policy
from daemon.lab.report import HEADLINE, headline_rows, write_report
from daemon.lab.runner import simulate
from daemon.lab.scenarios import TZ, consecutive, find_scenario
from daemon.lab.trace import PolicyResult

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
REFERENCES = ("efficiency", ORACLE)  # the runs `oracle_share` compares with


def simulate_command(
    shop_path: Path,
    scenario: str,
    modes: list[str],
    *,
    seed: int,
    json_out: Path | None,
    report: Path | None,
    explain: bool,
    scale: float = 1.0,
    history: str = "30d",
    ignored_first: float = 0.0,
    days: int = 1,
    experiment: str | None = None,
    split: str | None = None,
    guardrails: str | None = None,
) -> int:
    """The command; its exit code. Problems are reported as sentences on stderr."""
    err = Console(stderr=True)
    try:
        shop = load_shop_file(shop_path)
    except ConfigError as exc:
        for problem in exc.problems:
            err.print(f"[red]{problem}[/red]")
        return EXIT_USAGE
    try:
        consecutive(find_scenario(scenario), days)
        grey = _grey_test(shop, modes, experiment, split, guardrails)
        policies = [parse_policy(m) for m in modes] or [parse_policy(AS_CONFIGURED)]
        for policy in policies:
            policy.apply(shop)
    except ValueError as exc:
        err.print(str(exc))
        return EXIT_USAGE
    if len({p.name for p in policies}) < len(policies):
        err.print("each --mode must name a different policy")
        return EXIT_USAGE
    references = [
        parse_policy(name) for name in REFERENCES if name not in {p.name for p in policies}
    ]
    if grey is not None:  # one run, the arms side by side; no references
        policies, references = [Policy(f"grey test {grey.name}")], []
    elif shop.experiment is not None:
        shop = shop.model_copy(update={"experiment": None})
        err.print(
            "the shop file's [experiment] is left out: each --mode routes every buyer", markup=False
        )
    started = time.perf_counter()
    world = World(scale, history, ignored_first, days, grey)
    results, extra = _run_all(shop, scenario, policies, references, seed, world, err)
    seconds = time.perf_counter() - started
    out = Console()
    days_text = f" × {days} days" if days > 1 else ""
    title = f"shop {shop.id} · {scenario}{days_text} · seed {seed} · {seconds:.1f} s"
    if ignored_first:
        title += f" · {ignored_first:.0%} of first messages ignored"
    out.print(_table(title, results, list(extra)))
    _print_grey(out, results)
    if explain:
        for name, result in results.items():
            out.print(f"\n== policy {name}")
            out.print(render_table(result.explain), markup=False, highlight=False)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        document = _document(shop, scenario, seed, world, results, extra)
        json_out.write_bytes(orjson.dumps(document))
        out.print(f"JSON: {json_out}")
    if report is not None:
        page = write_report(report, shop_id=shop.id, scenario=scenario, seed=seed, results=results)
        out.print(f"report: {page}")
    return EXIT_OK


def _grey_test(
    shop: ShopConfig,
    modes: list[str],
    experiment: str | None,
    split: str | None,
    guardrails: str | None,
) -> LabExperiment | None:
    """The grey test to run instead of the policies (module docstring), or None;
    ValueError saying what is wrong with the arguments."""
    if modes and experiment is not None:
        raise ValueError("--experiment runs its arms in one simulated shop: leave out --mode")
    if modes:  # the file's [experiment] is left out: --split and --guardrails alone are wrong
        lab_experiment(shop.model_copy(update={"experiment": None}), None, split, guardrails)
        return None
    return lab_experiment(shop, experiment, split, guardrails)


def _print_grey(out: Console, results: dict[str, PolicyResult]) -> None:
    """A grey test's table, and why each stopped arm was stopped."""
    for result in results.values():
        if result.grey is None:
            continue
        out.print(_grey_table(result.grey))
        for row in result.grey["arms"]:
            if row["stopped"] is not None:
                out.print(f"{row['arm']} stopped: {row['stopped']['why']}")


@dataclass(frozen=True, slots=True)
class World:
    """What every run of the command shares besides the shop, scenario and seed."""

    scale: float
    history: str
    ignored_first: float
    days: int = 1
    experiment: LabExperiment | None = None  # a grey test (daemon.lab.grey)


def _run_all(
    shop: ShopConfig,
    scenario: str,
    policies: list[Policy],
    references: list[Policy],
    seed: int,
    world: World,
    err: Console,
) -> tuple[dict[str, PolicyResult], dict[str, PolicyResult]]:
    """The runs of `policies`, then of the `references` not among them (module docstring),
    every one with its `oracle_share`."""
    results: dict[str, PolicyResult] = {}
    extra: dict[str, PolicyResult] = {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    runs = [(p, results, "") for p in policies] + [(p, extra, " (reference)") for p in references]
    with Progress(*columns, console=err, transient=not sys.stderr.isatty()) as bar:
        for policy, into, label in runs:
            task = bar.add_task(f"{scenario} · {policy.name}{label}", total=1.0)

            def advance(done: float, task: TaskID = task) -> None:
                bar.update(task, completed=done)

            run = simulate(
                shop, scenario, seed=seed, policy=policy, scale=world.scale, progress=advance,
                history=world.history, ignored_first=world.ignored_first, days=world.days,
                experiment=world.experiment,
            )  # fmt: skip
            bar.update(task, completed=1.0)
            trace = run.trace
            into[policy.name] = PolicyResult(
                trace=trace,
                measures=measure(trace),
                explain=explain_shop(run.engine.shop(shop.id), trace.end),
                estimates=estimate_points(trace),
                grey=None if run.grey is None else run.grey.summary(),
            )
    add_oracle_shares(
        {name: r.measures for name, r in (results | extra).items()},
        {p.name: p.conversion_groups(shop) for p in policies + references},
    )
    return results, extra


def _table(title: str, results: dict[str, PolicyResult], references: list[str]) -> Table:
    """Measures down, policies across (fits a terminal for several policies); the caption
    names the references run for the oracle share but not asked for."""
    rows = headline_rows(results)
    caption = (
        f"oracle share against {' and '.join(references)}, run as references"
        if references
        else None
    )
    table = Table(title=title, caption=caption)
    table.add_column(rows[0][0])
    for row in rows[1:]:
        table.add_column(row[0], justify="right")
    for i, label in enumerate(rows[0][1:], start=1):
        table.add_row(label, *(row[i] for row in rows[1:]))
    return table


def _document(
    shop: ShopConfig,
    scenario: str,
    seed: int,
    world: World,
    results: dict[str, PolicyResult],
    references: dict[str, PolicyResult],
) -> dict[str, Any]:
    """Everything for machines; the same seed gives the same bytes (no timings in it)."""
    return {
        "shop": shop.id,
        "scenario": scenario,
        "seed": seed,
        "history": world.history,
        "ignored_first": world.ignored_first,
        "days": world.days,
        "headline_keys": [key for key, _, _ in HEADLINE],
        "policies": {
            name: {
                "inquiries": len(r.trace.inquiries),
                "measures": r.measures,
                "explain": r.explain,
            }
            for name, r in results.items()
        },
        "references": {
            name: {
                "inquiries": len(r.trace.inquiries),
                "headline": r.measures["headline"],
                "conversion": r.measures["conversion"],
            }
            for name, r in references.items()
        },
        "experiment": next((r.grey for r in results.values() if r.grey is not None), None),
    }


def _grey_table(grey: dict[str, Any]) -> Table:
    """A grey test's figures (`daemon.core.experiment.report`) beside the world's truth:
    measures down, arms across."""
    arms = grey["arms"]
    rails = ", ".join(f"{k} {v}" for k, v in grey["guardrails"].items()) or "none"
    table = Table(
        title=f"grey test {grey['name']} · guardrails: {rails}",
        caption=f"{grey['method']}. true: the world's order chance per session, its mean per "
        "arm (docs/lab.md, grey tests); due: the orders due by the end only",
    )
    table.add_column("arm")
    for row in arms:
        table.add_column(row["arm"], justify="right")
    rows: list[tuple[str, Any]] = [
        ("policy", lambda r: r["lab_policy"]),
        ("split", lambda r: f"{r['split']}%"),
        ("buyers", lambda r: f"{r['buyers']:,}"),
        ("sessions", lambda r: f"{r['sessions']:,}"),
        ("conversion [95%]", lambda r: share_text(r["conversion"])),
        ("uplift, points [95%]", lambda r: uplift_text(r["uplift"])),
        ("true conversion (due)", lambda r: _true(r["true"], r["true_due"], "{:.1%}")),
        ("true uplift, points (due)", _true_points),
        ("p95 wait [95%]", lambda r: wait_text(r["p95_wait_s"])),
        ("replies within deadline [95%]", lambda r: share_text(r["replies_within_deadline"])),
        ("stopped", lambda r: _stopped(r["stopped"])),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in arms))
    return table


def _true(value: float | None, due: float | None, fmt: str) -> str:
    if value is None or due is None:
        return "–"
    return f"{fmt.format(value)} ({fmt.format(due)})"


def _true_points(r: dict[str, Any]) -> str:
    if r["true_uplift"] is None or r["true_uplift_due"] is None:
        return "–"
    return f"{r['true_uplift'] * 100:+.1f} ({r['true_uplift_due'] * 100:+.1f})"


def _stopped(stop: dict[str, Any] | None) -> str:
    if stop is None:
        return "–"
    at = datetime.fromtimestamp(stop["at"] / 1000, TZ)
    return f"{at:%m-%d %H:%M} ({stop['guardrail']})"
