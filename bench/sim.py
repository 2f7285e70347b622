"""Policy-lab benchmark: the policy tables of the big example shop, the conversion-priority
question, the wait-estimate error, the simulator's speed, conversion priority against the
oracle and its frontier against fairness.

    .venv/bin/python bench/sim.py [--seed 1]

1. `steady` and `double11` for config/shops/big.toml under efficiency and conversion
   low / mid / high (every group), side by side on the same buyers: the headline measures.
2. The presale group alone (`presale=efficiency` vs `presale=conversion:high`) with its 13
   agents as configured, again without the unmatched pool (presale `accept_unmatched =
   false`: the pool's buyers are routed by the shop's mode, not presale's), and with the
   group cut to 5 agents (conversion priority applies only above `conversion_min_agents`
   = 5): presale conversion, realised and expected (the mean order chance of the buyers
   served, free of the luck of the order draws), orders, p95 wait, fairness among presale
   agents.
3. Wait-estimate error of Fenliu's estimator against the better of the Asterisk and
   Rocket.Chat baselines, on `steady`, `double11` and `uneven_shifts`, three seeds each:
   the mean absolute error in seconds, MARE, the MARE of waits of 30 s or more
   (`daemon/lab/measures.py` says why all three) and of waits under 30 s; Fenliu with the
   shop's past (`--history 30d`: it knows who usually comes online) and without (`none`).
   Target (issue 15): mean absolute error at most half the better baseline's in every run,
   short waits no worse. Beside it, a gauge: the same run with the engine told which
   inquiries will leave their line unserved (`simulate(leavers=...)`, from the first run;
   the world does not read estimates, so the bench checks nothing else changes): what the
   estimate could be if it knew who gives up rather than how likely each is to.
4. Speed: a `steady` day of a 50-agent shop (about 20k inquiries). Target: under a minute
   on one core.
5. Conversion priority against the oracle (issue 15): `steady`, seeds 1-3, arrivals ×0.3,
   0.5, 0.8, 1.0, 1.2, on config/shops/big.toml and config/shops/presale.toml, every
   group's mode overridden (efficiency, conversion low / mid / high, oracle), the shop
   knowing 30 days of history (the lab's default): expected presale conversion, each
   strength's `oracle_share` of the presale uplift, presale Jain and p95 wait, and the top
   30% converters' share of presale sessions against their share of presale capacity.
   Then the presale group cut to `conversion_min_agents` agents: conversion must change
   nothing. `--only oracle` runs this section alone.
6. The frontier (issue 15's Jain target): conversion:high with its strength exponent set
   by this bench (0.5-16; the daemon's low / mid / high are 0.5 / 2 / 6), `steady`, arrivals
   ×0.3 and ×0.5, both shops, seeds 1-3: presale oracle share against presale Jain, the top
   30% converters' share of sessions, the oracle's own Jain and top-30% share, and the
   highest Jain any routing could have at 70% of the oracle's uplift (`even_bound`).
   `--only frontier` runs this section alone.
7. Replies (issue 26, item 5): `steady`, seeds 1-3, arrivals ×0.5 and ×1.0, both shops as
   configured, in a world where 5% of first messages are ignored (`ignored_first`), with
   `[replies] reassign_after` off, 60 s and 100 s, and for reference a world where every
   message is answered: first replies and all replies within the deadline, first-reply
   p95, reassignments, p95 queue wait, abandonment and expected presale conversion, means
   over the seeds. Targets: with 100 s, first replies within 3
   minutes ≥ 98%, p95 queue wait no worse than +10% and presale conversion no worse than
   off. A Fenliu whose shops have no `[replies]` yet (the routing core brings it, item 1)
   gets the rows with it off only. `--only replies` runs this section alone.
8. Grey tests in the lab (issue 27, item 5; `daemon/lab/grey.py`): presale.toml, `steady`,
   seeds 1-20, split 50/50, guardrails p95_wait +20% and replies_within_deadline -3pp, on
   two worker processes. (a) Coverage: over a week, how many runs' last uplift interval
   covers the true uplift the world knows (of every order, and of the orders due by the
   end), and how many covered it at every hourly look (target: at least 90% at the stated
   95%), for conversion:high against efficiency and for two efficiency arms. (b) Detection:
   the days until the uplift interval of conversion:high excludes 0, beside the true uplift
   side by side and a rollout's (each policy alone on all buyers). (c) A harmful arm: the
   lab-only `one-slow-agent`, and the plain `average`, one day: stopped or not, when, by
   which guardrail. (d) False stops: two efficiency arms over the week (promise: at most
   2 × alpha = 0.10), with the guardrails above and again at +0% and -0pp, where identical
   arms are on the edge and the promise is sharp. `--only grey` runs this section alone.

Prints its figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.config import load_shop_file
from daemon.core import candidate
from daemon.core.config import ShopConfig
from daemon.lab.grey import ONE_SLOW_AGENT, LabExperiment
from daemon.lab.measures import (
    ESTIMATORS,
    HOUR_MS,
    LONG_WAIT_S,
    estimate_points,
    expected_conversion,
    group_of,
    jain,
    measure,
    oracle_share,
)
from daemon.lab.policy import parse_policy
from daemon.lab.runner import simulate
from daemon.lab.scenarios import TZ
from daemon.lab.trace import Trace

BIG = Path(__file__).resolve().parents[1] / "config" / "shops" / "big.toml"
PRESALE = Path(__file__).resolve().parents[1] / "config" / "shops" / "presale.toml"
LOADS = (0.3, 0.5, 0.8, 1.0, 1.2)
STRENGTHS = ("conversion:low", "conversion:mid", "conversion:high")
TOP = 0.3  # the seed's observable: the top 30% converters
POLICIES = ("efficiency", "conversion:low", "conversion:mid", "conversion:high")


def say(text: str) -> None:
    """Progress and results, printed at once."""
    print(text, flush=True)


def run(
    shop: ShopConfig,
    scenario: str,
    policy: str,
    seed: int,
    history: str = "30d",
    leavers: frozenset[str] | None = None,
) -> dict[str, Any]:
    """One simulated run's measures (and Fenliu's MARE of short waits, `short_mare`; the
    trace's inquiries that left their line unserved, `leavers`, and what happened to each
    inquiry, `world`)."""
    policy_ = parse_policy(policy)
    trace = simulate(
        shop, scenario, seed=seed, policy=policy_, history=history, leavers=leavers
    ).trace
    return {
        **measure(trace),
        "short_mare": short_mare(trace),
        "leavers": frozenset(
            r.inquiry_id for r in trace.inquiries if r.queued_at is not None and r.served_at is None
        ),
        "world": [(r.inquiry_id, r.served_at, r.agent_id, r.left_at) for r in trace.inquiries],
    }


def policy_table(shop: ShopConfig, scenario: str, seed: int) -> None:
    """Section 1 and 3 for one scenario."""
    say(f"\n## {scenario}: config/shops/big.toml, every group's mode overridden, seed {seed}")
    rows = {}
    for policy in POLICIES:
        started = time.perf_counter()
        rows[policy] = run(shop, scenario, policy, seed)
        say(f"  ran {policy} in {time.perf_counter() - started:.1f}s")
    say(
        "| policy | inquiries | conversion | expected | orders | wait p50 | wait p95 | abandonment "
        "| Jain | Gini | max/min | MARE Fenliu | Asterisk | Rocket.Chat |"
    )
    say("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for policy, m in rows.items():
        h = m["headline"]
        say(
            f"| {policy} | {m['inquiries']:,} | {h['conversion']:.1%} "
            f"| {h['expected_conversion']:.2%} | {h['orders']} "
            f"| {h['wait_p50_s']:.0f} s | {h['wait_p95_s']:.0f} s | {h['abandonment']:.1%} "
            f"| {h['jain']:.3f} | {h['gini']:.3f} | {_num(h['max_min_share'])} "
            f"| {h['fenliu_mare']:.2f} | {h['asterisk_mare']:.2f} | {h['rocketchat_mare']:.2f} |"
        )


def estimate_seeds(shop: ShopConfig, seeds: range) -> None:
    """Section 3: the wait-estimate error on three scenarios and several seeds, Fenliu with
    the shop's past (`history="30d"`, the default: it knows who usually comes online) and
    without (`"none"`), beside the baselines (which the past does not change)."""
    say(f"\n## wait estimate, efficiency, seeds {seeds.start}-{seeds.stop - 1}")
    say(
        "| scenario | seed | measured | MAE (s) Fenliu 30d / none / Asterisk / Rocket.Chat "
        "| ratio 30d (none) | MARE 30d / none / Asterisk / Rocket.Chat | ratio 30d (none) "
        "| MARE wait ≥ 30 s 30d / none | ratio 30d (none) | MARE wait < 30 s 30d / none "
        "| bias 30d / none | MAE ratio knowing who leaves |"
    )
    say("|---|---|---|---|---|---|---|---|---|---|---|---|")
    ratios: dict[str, list[float]] = {"ratio_mae": [], "ratio": [], "ratio_long": []}
    hindsight: list[float] = []
    same_world = True
    short: dict[str, list[float]] = {"30d": [], "none": []}
    for scenario in ("steady", "double11", "uneven_shifts"):
        for seed in seeds:
            runs = {h: run(shop, scenario, "efficiency", seed, h) for h in ("30d", "none")}
            e, o = runs["30d"]["estimates"], runs["none"]["estimates"]
            told = run(shop, scenario, "efficiency", seed, leavers=runs["30d"]["leavers"])
            same_world &= told["world"] == runs["30d"]["world"]
            hindsight.append(told["estimates"]["ratio_mae"])
            shorts = {h: m["short_mare"] for h, m in runs.items()}
            for h, value in shorts.items():
                if value is not None:
                    short[h].append(value)
            cells = []
            for key, ratio in (
                ("mae_s", "ratio_mae"),
                ("mare", "ratio"),
                ("mare_long", "ratio_long"),
            ):
                figures = [e["fenliu"][key], o["fenliu"][key]]
                if key != "mare_long":
                    figures += [e[name][key] for name in ESTIMATORS[1:]]
                cells.append(" / ".join(_num(v) for v in figures))
                cells.append(f"{_num(e[ratio])} ({_num(o[ratio])})")
                if e[ratio] is not None:
                    ratios[ratio].append(e[ratio])
            cells.append(f"{_num(shorts['30d'])} / {_num(shorts['none'])}")
            cells.append(f"{e['fenliu']['bias']:+.2f} / {o['fenliu']['bias']:+.2f}")
            cells.append(_num(hindsight[-1]))
            say(f"| {scenario} | {seed} | {e['measured']:,} | {' | '.join(cells)} |")
    for ratio, values in ratios.items():
        say(
            f"  {ratio}: Fenliu (30d) / better baseline from {min(values):.2f} to "
            f"{max(values):.2f}, median {sorted(values)[len(values) // 2]:.2f}, target ≤ 0.5 "
            f"in {sum(v <= 0.5 for v in values)} of {len(values)} runs"
        )
    say(
        f"  knowing who leaves (a gauge, not an estimator): MAE ratio from {min(hindsight):.2f} "
        f"to {max(hindsight):.2f}, ≤ 0.5 in {sum(v <= 0.5 for v in hindsight)} of "
        f"{len(hindsight)} runs; every other outcome the same as without: "
        f"{'yes' if same_world else 'NO'}"
    )
    say(
        "  MARE of waits under 30 s, mean over the runs: "
        f"{sum(short['30d']) / len(short['30d']):.3f} with the past, "
        f"{sum(short['none']) / len(short['none']):.3f} without"
    )


def short_mare(trace: Trace) -> float | None:
    """Fenliu's MARE over the measured buyers who really waited under LONG_WAIT_S."""
    errors = [
        abs(f - real) / real for real, f, _, _ in estimate_points(trace) if real < LONG_WAIT_S
    ]
    return sum(errors) / len(errors) if errors else None


def _presale_variant(shop: ShopConfig, **update: object) -> ShopConfig:
    groups = tuple(g.model_copy(update=update) if g.name == "presale" else g for g in shop.groups)
    return shop.model_copy(update={"groups": groups})


def presale_question(shop: ShopConfig, seed: int) -> None:
    """Section 2: conversion priority in the presale group: as configured, without the
    unmatched pool, and cut to 5 agents."""
    presale = next(g for g in shop.groups if g.name == "presale")
    variants = (
        (f"{len(presale.agents)}", shop),
        (f"{len(presale.agents)}, no pool", _presale_variant(shop, accept_unmatched=False)),
        ("5", _presale_variant(shop, agents=presale.agents[:5])),
    )
    say(f"\n## presale alone: efficiency vs conversion:high (steady and double11, seed {seed})")
    say(
        "| presale agents | scenario | policy | presale served | conversion | expected "
        "| orders | p95 wait | Jain | Gini |"
    )
    say("|---|---|---|---|---|---|---|---|---|---|")
    for label, variant in variants:
        for scenario in ("steady", "double11"):
            for policy in ("presale=efficiency", "presale=conversion:high"):
                m = run(variant, scenario, policy, seed)
                conv = m["conversion"]["by_group"].get("presale", {})
                wait = m["waits"]["by_group"].get("presale", {})
                fair = m["fairness"]["by_group"].get("presale", {})
                say(
                    f"| {label} | {scenario} | {policy} | {conv.get('served', 0):,} "
                    f"| {conv.get('rate', 0):.1%} | {conv.get('expected_rate', 0):.2%} "
                    f"| {conv.get('orders', 0)} | {_num(wait.get('p95_s'))} s "
                    f"| {_num(fair.get('jain'))} | {_num(fair.get('gini'))} |"
                )


def shop50() -> ShopConfig:
    """A 50-agent shop sized for about 20k inquiries on a steady day (four groups)."""
    rng = random.Random(20240618)
    ids = [f"a{i:03d}" for i in range(50)]
    agents = [
        {"id": a, "weight": rng.choice((0.8, 1.0, 1.2, 1.5)), "level": rng.randint(2, 4)}
        for a in ids
    ]
    groups = [
        {"name": "vip", "agents": ids[:5], "accept_unmatched": False, "match": {"crowd": ["vip"]}},
        {
            "name": "presale",
            "agents": ids[5:23],
            "mode": "conversion",
            "conversion_strength": "high",
            "accept_unmatched": False,
            "match": {"intents": ["presale"]},
        },
        {
            "name": "aftersale",
            "agents": ids[23:35],
            "mode": "weighted",
            "accept_unmatched": False,
            "overflow_to": "general",
            "match": {"intents": ["aftersale"]},
        },
        {"name": "general", "agents": ids[35:], "mode": "average"},
    ]
    return ShopConfig.model_validate(
        {
            "id": "bench50",
            "agents": agents,
            "groups": groups,
            "queue": {
                "enabled": True,
                "default_cap": 11,
                "session_timeout": "30s",
                "max_wait": "3m",
                "avg_handle_time": "80s",
            },
        }
    )


def speed(seed: int) -> None:
    """Section 4."""
    shop = shop50()
    started = time.perf_counter()
    result = simulate(shop, "steady", seed=seed, policy=parse_policy("as-configured"))
    took = time.perf_counter() - started
    say(
        f"\n## speed: steady day, 50 agents: {len(result.trace.inquiries):,} inquiries "
        f"simulated in {took:.1f} s on one core (target < 60 s)"
    )


def top_share(trace: Trace, group: str = "presale") -> tuple[float, float]:
    """The top TOP converters of `group` (by true rate): their share of the group's
    served buyers, and their share of its capacity (cap × online hours)."""
    members = [a for a, rec in trace.agents.items() if group in rec.groups]
    ranked = sorted(members, key=lambda a: -trace.agents[a].true_conversion)
    top = set(ranked[: max(1, round(TOP * len(ranked)))])
    served = [r.agent_id for r in trace.inquiries if r.served_at and group_of(r) == group]
    capacity = {a: (trace.caps.get(a) or 1) * trace.agents[a].online_ms for a in members}
    sessions = sum(1 for a in served if a in top) / max(1, len(served))
    return sessions, sum(capacity[a] for a in top) / max(1, sum(capacity.values()))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def oracle_rows(name: str, shop: ShopConfig, seeds: range) -> list[dict[str, Any]]:
    """Section 5 for one shop: one row per load, figures per seed."""
    rows = []
    for scale in LOADS:
        per_seed = []
        for seed in seeds:
            started = time.perf_counter()
            runs = {}
            for policy in ("efficiency", *STRENGTHS, "oracle"):
                trace = simulate(
                    shop, "steady", seed=seed, policy=parse_policy(policy), scale=scale
                ).trace
                runs[policy] = (trace, measure(trace))
            eff, orc = runs["efficiency"][1], runs["oracle"][1]
            fig: dict[str, Any] = {}
            for policy, (trace, m) in runs.items():
                fig[policy] = {
                    "expected": expected_conversion(m, ["presale"]),
                    "share": oracle_share(m, eff, orc, ["presale"]),
                    "jain": m["fairness"]["by_group"]["presale"]["jain"],
                    "p95": m["waits"]["by_group"]["presale"]["p95_s"] or 0.0,
                    "top": top_share(trace),
                }
            per_seed.append(fig)
            say(f"  {name} ×{scale} seed {seed}: {time.perf_counter() - started:.1f}s")
        rows.append({"scale": scale, "seeds": per_seed})
    return rows


def oracle_table(name: str, rows: list[dict[str, Any]]) -> None:
    """Section 5's tables for one shop (means over the seeds; shares min-max)."""
    say(f"\n### {name}: expected presale conversion (mean of seeds) and oracle share")
    say(
        "| arrivals | efficiency | low | mid | high | oracle | high vs efficiency "
        "| oracle vs efficiency | oracle share low / mid / high (high: min-max) |"
    )
    say("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        seeds = row["seeds"]

        def mean(policy: str, key: str, seeds: list[dict[str, Any]] = seeds) -> float:
            return _mean([f[policy][key] for f in seeds])

        e = {p: mean(p, "expected") for p in ("efficiency", *STRENGTHS, "oracle")}
        shares = [mean(p, "share") for p in STRENGTHS]
        high = [f["conversion:high"]["share"] for f in seeds]
        say(
            f"| ×{row['scale']} | {' | '.join(f'{v:.2%}' for v in e.values())} "
            f"| {e['conversion:high'] / e['efficiency'] - 1:+.1%} "
            f"| {e['oracle'] / e['efficiency'] - 1:+.1%} "
            f"| {' / '.join(f'{v:.2f}' for v in shares)} ({min(high):.2f}-{max(high):.2f}) |"
        )
    say(f"\n### {name}: presale fairness, waits and the top 30% (mean of seeds)")
    say(
        "| arrivals | Jain eff / low / high / oracle | p95 wait eff / low / high / oracle "
        "| top 30%: sessions eff / high / oracle | capacity |"
    )
    say("|---|---|---|---|---|")
    for row in rows:
        seeds = row["seeds"]
        pols = ("efficiency", "conversion:low", "conversion:high", "oracle")
        jain = " / ".join(f"{_mean([f[p]['jain'] for f in seeds]):.2f}" for p in pols)
        p95 = " / ".join(f"{_mean([f[p]['p95'] for f in seeds]):.0f}" for p in pols)
        top = " / ".join(
            f"{_mean([f[p]['top'][0] for f in seeds]):.0%}"
            for p in ("efficiency", "conversion:high", "oracle")
        )
        cap = _mean([f["efficiency"]["top"][1] for f in seeds])
        say(f"| ×{row['scale']} | {jain} | {p95} s | {top} | {cap:.0%} |")


def min_agents_check(shop: ShopConfig, seeds: range) -> None:
    """Section 5, last part: with the presale group cut to `conversion_min_agents` agents,
    conversion mode must decide exactly as efficiency."""
    few = _presale_variant(shop, agents=next(g for g in shop.groups if g.name == "presale")
                           .agents[: shop.conversion_min_agents])  # fmt: skip
    same = []
    for seed in seeds:
        traces = [
            simulate(few, "steady", seed=seed, policy=parse_policy(p), scale=0.5).trace
            for p in ("presale=efficiency", "presale=conversion:high")
        ]
        routes = [[(r.inquiry_id, r.agent_id) for r in t.inquiries] for t in traces]
        same.append(routes[0] == routes[1])
    say(
        f"\n{shop.id} with presale cut to {shop.conversion_min_agents} agents (×0.5, seeds "
        f"{seeds.start}-{seeds.stop - 1}): presale=conversion:high routes every buyer as "
        f"presale=efficiency: {'yes' if all(same) else 'NO'} ({sum(same)} of {len(same)} seeds)"
    )


def oracle_section(seeds: range) -> None:
    """Section 5."""
    say(
        f"\n## conversion priority against the oracle: steady, seeds {seeds.start}-"
        f"{seeds.stop - 1}, 30 days of history, every group's mode overridden"
    )
    for name, path in (("big.toml", BIG), ("presale.toml", PRESALE)):
        shop = load_shop_file(path)
        oracle_table(name, oracle_rows(name, shop, seeds))
        min_agents_check(shop, seeds)


# ------------------------------------------------------------------- the frontier

FRONTIER_LOADS = (0.3, 0.5)
EXPONENTS = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)
SHARE_TARGET, JAIN_TARGET = 0.7, 0.7


@contextmanager
def high_exponent(exponent: float) -> Iterator[None]:
    """`conversion:high` with another strength exponent, for this bench only: the core's
    table (daemon/core/candidate.py STRENGTH_EXPONENT, read at each ranking, compiled or
    not) is set and put back. The daemon's contract (low / mid / high) is untouched;
    `frontier_check` shows the setting takes: exponents 2 and 6 route as mid and high."""
    table = candidate.STRENGTH_EXPONENT
    before = table["high"]
    table["high"] = exponent
    try:
        yield
    finally:
        table["high"] = before


def even_bound(m_eff: dict[str, Any], m_orc: dict[str, Any], trace: Trace) -> dict[str, float]:
    """The highest presale Jain any routing could have at SHARE_TARGET of the oracle's
    uplift: the oracle's presale sessions spread as evenly as possible (`_placement` with
    nothing fixed), subject to their mean true rate reaching efficiency's + SHARE_TARGET ×
    (oracle's − efficiency's). Caps are left out, so `jain` is an upper bound of the
    expected x. Realised counts are less even (efficiency's presale Jain is 0.86-0.99 at
    light load, not 1): `noisy` is the mean Jain of NOISY_DRAWS multinomial draws of the
    oracle's number of presale sessions with chances h·x, and `even_noisy` the same with x
    equal (to compare with efficiency's). `top`: the top 30% converters' share of sessions."""
    per_hour = m_orc["fairness"]["by_group"]["presale"]["per_hour"]
    agents, hours, rate = _presale(m_orc, trace)
    target = _target_rate(m_eff, m_orc, trace)
    sessions = sum(per_hour[a] * hours[a] for a in agents)
    x = _placement(dict.fromkeys(agents, 0.0), hours, rate, sessions, target * sessions)
    return {
        "jain": jain(list(x.values())) or 0.0,
        "top": _top_share({a: x[a] * hours[a] for a in agents}, rate),
        "noisy": _noisy_jain({a: x[a] * hours[a] for a in agents}, hours, round(sessions)),
        "even_noisy": _noisy_jain(hours, hours, round(sessions)),
    }


def placement_bound(
    m_eff: dict[str, Any], m_orc: dict[str, Any], trace: Trace, orc_trace: Trace
) -> dict[str, float]:
    """The highest presale Jain at SHARE_TARGET of the oracle's uplift for a rule that
    changes only which agent conversion mode picks: the presale sessions of `trace` (a
    conversion:high run) not routed by conversion mode (the efficiency fallback at
    `conversion_min_agents` or fewer eligible agents, sticky, repeat entry, active
    session) stay where they went; its conversion-mode ones are placed as evenly as the
    target allows (`_placement`). Caps are left out: an upper bound."""
    agents, hours, rate = _presale(m_orc, orc_trace)
    fixed, placed = dict.fromkeys(agents, 0.0), 0
    for r in trace.inquiries:
        if r.served_at is None or r.agent_id not in fixed or group_of(r) != "presale":
            continue
        if r.mode == "conversion":
            placed += 1
        else:
            fixed[r.agent_id] += 1 / hours[r.agent_id]
    sessions = placed + sum(fixed[a] * hours[a] for a in agents)
    need = _target_rate(m_eff, m_orc, orc_trace) * sessions
    need -= sum(fixed[a] * hours[a] * rate[a] for a in agents)
    x = _placement(fixed, hours, rate, placed, need)
    top = _top_share({a: x[a] * hours[a] for a in agents}, rate)
    return {"jain": jain(list(x.values())) or 0.0, "top": top}


def _presale(
    m_orc: dict[str, Any], trace: Trace
) -> tuple[list[str], dict[str, float], dict[str, float]]:
    """The presale agents the oracle's run measured, their hours online and true rates."""
    agents = sorted(m_orc["fairness"]["by_group"]["presale"]["per_hour"])
    hours = {a: trace.agents[a].online_ms / HOUR_MS for a in agents}
    rate = {a: trace.agents[a].true_conversion for a in agents}
    return agents, hours, rate


def _target_rate(m_eff: dict[str, Any], m_orc: dict[str, Any], trace: Trace) -> float:
    """Presale buyers' mean true rate at SHARE_TARGET of the oracle's uplift over efficiency."""

    def mean_rate(per_hour: dict[str, float]) -> float:
        n = {a: x * trace.agents[a].online_ms for a, x in per_hour.items()}
        return sum(n[a] * trace.agents[a].true_conversion for a in n) / sum(n.values())

    low = mean_rate(m_eff["fairness"]["by_group"]["presale"]["per_hour"])
    return low + SHARE_TARGET * (
        mean_rate(m_orc["fairness"]["by_group"]["presale"]["per_hour"]) - low
    )


def _top_share(sessions: dict[str, float], rate: dict[str, float]) -> float:
    """The top 30% converters' share of `sessions` (agent -> sessions)."""
    ranked = sorted(sessions, key=lambda a: -rate[a])
    top = ranked[: max(1, round(TOP * len(ranked)))]
    return sum(sessions[a] for a in top) / sum(sessions.values())


def _placement(
    fixed: dict[str, float],
    hours: dict[str, float],
    rate: dict[str, float],
    placed: float,
    need: float,
) -> dict[str, float]:
    """Sessions per online hour x = fixed + y, as even as possible (least Σx²), where y >= 0
    places `placed` sessions (Σ h·y) bringing at least `need` expected orders (Σ h·r·y).
    By the KKT conditions y = max(0, h·(α + β·r) − fixed) with β >= 0: α is found by
    bisection for each β, and β (the tilt toward better converters) as the least that
    meets `need`; if even all on the best converter falls short, all go there."""
    agents = sorted(fixed)

    def spread(alpha: float, beta: float) -> dict[str, float]:
        return {a: max(0.0, hours[a] * (alpha + beta * rate[a]) - fixed[a]) for a in agents}

    def for_tilt(beta: float) -> dict[str, float]:
        lo, hi = -beta * max(rate.values()), 1.0
        while sum(hours[a] * y for a, y in spread(hi, beta).items()) < placed:
            hi *= 2
        for _ in range(60):
            mid = (lo + hi) / 2
            if sum(hours[a] * y for a, y in spread(mid, beta).items()) < placed:
                lo = mid
            else:
                hi = mid
        return spread(hi, beta)

    def orders(y: dict[str, float]) -> float:
        return sum(hours[a] * rate[a] * y[a] for a in agents)

    y = for_tilt(0.0)
    if orders(y) < need:
        lo, hi = 0.0, 1.0
        while orders(for_tilt(hi)) < need and hi < 1e9:
            hi *= 2
        for _ in range(60):
            mid = (lo + hi) / 2
            if orders(for_tilt(mid)) < need:
                lo = mid
            else:
                hi = mid
        y = for_tilt(hi)
    return {a: fixed[a] + y[a] for a in agents}


NOISY_DRAWS = 200


def _noisy_jain(weights: dict[str, float], hours: dict[str, float], sessions: int) -> float:
    """Mean Jain of per-hour counts when `sessions` go to agents with chances ∝ weights."""
    draw = random.Random(sessions)
    agents = sorted(weights)
    values = []
    for _ in range(NOISY_DRAWS):
        counts = dict.fromkeys(agents, 0)
        for a in draw.choices(agents, weights=[weights[a] for a in agents], k=sessions):
            counts[a] += 1
        values.append(jain([counts[a] / hours[a] for a in agents]) or 0.0)
    return _mean(values)


def frontier_rows(shop: ShopConfig, scale: float, seeds: range) -> list[dict[str, Any]]:
    """Per seed: each exponent's presale oracle share and Jain, and the references'."""
    rows = []
    for seed in seeds:

        def one(policy: str, seed: int = seed) -> tuple[Trace, dict[str, Any]]:
            trace = simulate(
                shop, "steady", seed=seed, policy=parse_policy(policy), scale=scale
            ).trace
            return trace, measure(trace)

        (_, eff), (orc_trace, orc) = one("efficiency"), one("oracle")
        row: dict[str, Any] = {
            "oracle": {
                "jain": orc["fairness"]["by_group"]["presale"]["jain"],
                "top": top_share(orc_trace),
                "bound": even_bound(eff, orc, orc_trace),
            },
            "efficiency": {"jain": eff["fairness"]["by_group"]["presale"]["jain"]},
            "exponents": {},
        }
        high = candidate.STRENGTH_EXPONENT["high"]
        for exponent in EXPONENTS:
            with high_exponent(exponent):
                trace, m = one("conversion:high")
            if exponent == high:
                row["oracle"]["placement"] = placement_bound(eff, orc, trace, orc_trace)
            row["exponents"][exponent] = {
                "share": oracle_share(m, eff, orc, ["presale"]),
                "jain": m["fairness"]["by_group"]["presale"]["jain"],
                "top": top_share(trace)[0],
            }
        rows.append(row)
    return rows


def frontier_check(shop: ShopConfig) -> bool:
    """The bench's setting of the exponent takes: 2 and 6 route every buyer as mid, high."""
    same = []
    for exponent, policy in ((2.0, "conversion:mid"), (6.0, "conversion:high")):
        with high_exponent(exponent):
            set_ = simulate(
                shop, "steady", seed=1, policy=parse_policy("conversion:high"), scale=0.5
            )
        named = simulate(shop, "steady", seed=1, policy=parse_policy(policy), scale=0.5)
        routes = [
            [(r.inquiry_id, r.agent_id) for r in run.trace.inquiries] for run in (set_, named)
        ]
        same.append(routes[0] == routes[1])
    return all(same)


def frontier_section(seeds: range) -> None:
    """Section 6: the trade-off of the strength exponent (oracle share against presale Jain)."""
    say(
        f"\n## the frontier: conversion:high's strength exponent, steady, seeds {seeds.start}-"
        f"{seeds.stop - 1}, every group's mode overridden (targets: share >= {SHARE_TARGET}, "
        f"presale Jain >= {JAIN_TARGET})"
    )
    for name, path in (("big.toml", BIG), ("presale.toml", PRESALE)):
        shop = load_shop_file(path)
        say(f"\n{name}: exponents 2 and 6 set by the bench route as mid and high: "
            f"{'yes' if frontier_check(shop) else 'NO'}")  # fmt: skip
        for scale in FRONTIER_LOADS:
            frontier_table(name, scale, frontier_rows(shop, scale, seeds))


def _span(values: list[float]) -> str:
    return f"{_mean(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def frontier_table(name: str, scale: float, rows: list[dict[str, Any]]) -> None:
    """One shop and load: a row per exponent (means of seeds, min-max), then the oracle."""
    say(f"\n### {name} ×{scale}: oracle share and presale Jain by exponent")
    say("| exponent | oracle share | presale Jain | top 30%: sessions | both targets (seeds) |")
    say("|---|---|---|---|---|")
    for exponent in EXPONENTS:
        figs = [row["exponents"][exponent] for row in rows]
        both = sum(f["share"] >= SHARE_TARGET and f["jain"] >= JAIN_TARGET for f in figs)
        say(
            f"| {exponent:g} | {_span([f['share'] for f in figs])} "
            f"| {_span([f['jain'] for f in figs])} | {_mean([f['top'] for f in figs]):.0%} "
            f"| {both} of {len(figs)} |"
        )
    orc = [row["oracle"] for row in rows]
    bounds = [o["bound"] for o in orc]
    say(
        f"| efficiency | 0 | {_span([row['efficiency']['jain'] for row in rows])} | "
        f"{_mean([o['top'][1] for o in orc]):.0%} (capacity) | |"
    )
    say(
        f"| oracle | 1 | {_span([o['jain'] for o in orc])} "
        f"| {_mean([o['top'][0] for o in orc]):.0%} | |"
    )
    say(
        f"| even tilt at share {SHARE_TARGET} (bound) | {SHARE_TARGET} "
        f"| {_span([b['jain'] for b in bounds])} | {_mean([b['top'] for b in bounds]):.0%} | |"
    )
    say(
        f"| the same, counts drawn (efficiency's shares drawn: "
        f"{_span([b['even_noisy'] for b in bounds])}) | {SHARE_TARGET} "
        f"| {_span([b['noisy'] for b in bounds])} | | |"
    )
    placements = [o["placement"] for o in orc]
    say(
        f"| conversion:high's own picks placed at share {SHARE_TARGET} (bound) "
        f"| {SHARE_TARGET} | {_span([p['jain'] for p in placements])} "
        f"| {_mean([p['top'] for p in placements]):.0%} | |"
    )


# ------------------------------------------------------------------- replies

REPLY_LOADS = (0.5, 1.0)
IGNORED_FIRST = 0.05
# (share of first messages ignored, reassign_after in s; None: off, the contract's default)
REPLY_WORLDS = ((0.0, None), (IGNORED_FIRST, None), (IGNORED_FIRST, 60), (IGNORED_FIRST, 100))


def with_reassign_after(shop: ShopConfig, seconds: int) -> ShopConfig | None:
    """The shop with `[replies] reassign_after`; None while shops have no `[replies]`."""
    replies = getattr(shop, "replies", None)
    if replies is None:
        return None
    update = {"reassign_after": seconds * 1000}
    return shop.model_copy(update={"replies": replies.model_copy(update=update)})


def replies_row(shop: ShopConfig, scale: float, ignored: float, seeds: range) -> dict[str, float]:
    """Section 7's figures for one shop, load and setting: means over the seeds."""
    keys = ("first_reply_share_within", "reply_share_within", "first_reply_p95_s", "reassigned")
    per_seed: list[dict[str, float]] = []
    for seed in seeds:
        policy = parse_policy("as-configured")
        trace = simulate(
            shop, "steady", seed=seed, policy=policy, scale=scale, ignored_first=ignored
        ).trace
        m = measure(trace)
        head = m["headline"]
        per_seed.append(
            {
                **{key: head[key] or 0.0 for key in keys},
                "wait_p95_s": head["wait_p95_s"] or 0.0,
                "abandonment": head["abandonment"] or 0.0,
                "presale": expected_conversion(m, ["presale"]) or 0.0,
            }
        )
    return {key: _mean([fig[key] for fig in per_seed]) for key in per_seed[0]}


def replies_section(seeds: range) -> None:
    """Section 7."""
    say(
        f"\n## replies: steady, seeds {seeds.start}-{seeds.stop - 1}, shops as configured "
        "(means of seeds)"
    )
    say(
        "| shop | arrivals | first messages ignored | reassign_after | first replies ≤ deadline "
        "| replies ≤ deadline "
        "| first reply p95 | reassigned | p95 queue wait | abandonment "
        "| expected presale conversion |"
    )
    say("|---|---|---|---|---|---|---|---|---|---|---|")
    missing = False
    for name, path in (("big.toml", BIG), ("presale.toml", PRESALE)):
        base = load_shop_file(path)
        for scale in REPLY_LOADS:
            for ignored, after in REPLY_WORLDS:
                shop = base if after is None else with_reassign_after(base, after)
                if shop is None:
                    missing = True
                    continue
                started = time.perf_counter()
                f = replies_row(shop, scale, ignored, seeds)
                say(
                    f"| {name} | ×{scale} | {ignored:.0%} "
                    f"| {'off' if after is None else f'{after} s'} "
                    f"| {f['first_reply_share_within']:.2%} | {f['reply_share_within']:.2%} "
                    f"| {f['first_reply_p95_s']:.0f} s | {f['reassigned']:.1f} "
                    f"| {f['wait_p95_s']:.0f} s | {f['abandonment']:.1%} | {f['presale']:.2%} |"
                )
                say(f"  ({time.perf_counter() - started:.1f}s)")
    if missing:
        say("  reassign_after 60 s / 100 s: not run, this Fenliu's shops have no [replies] yet")


# ------------------------------------------------------------------- grey tests

GREY_SEEDS = 20
GREY_DAYS = 7  # a week-long test: 20 seeds of it take a few minutes on two cores
GREY_RAILS = {"p95_wait": "+20%", "replies_within_deadline": "-3pp"}
ZERO_RAILS = {"p95_wait": "+0%", "replies_within_deadline": "-0pp"}  # (d) at the edge
GREY_SPLIT = {"control": 50, "treatment": 50}
CONV_HIGH = {"control": "efficiency", "treatment": "conversion:high"}
SAME = {"control": "efficiency", "treatment": "efficiency"}
HIGH_ALONE = {"control": "conversion:high", "treatment": "conversion:high"}
PLAIN_HARM = {"control": "efficiency", "treatment": "average"}
LAB_HARM = {"control": "efficiency", "treatment": ONE_SLOW_AGENT}


GreyJob = tuple[dict[str, str], int, int, dict[str, str]]  # arms, days, seed, guardrails


def grey_job(job: GreyJob) -> dict[str, Any]:
    """One grey test on presale.toml (`steady` for `days` days): the core's report with the
    lab's truth and hourly looks (`GreyWatch.summary`), and the CPU time it took."""
    arms, days, seed, rails = job
    started = time.process_time()
    spec = LabExperiment("lab", arms, GREY_SPLIT, rails)
    policy = parse_policy("as-configured")
    run = simulate(
        load_shop_file(PRESALE), "steady", seed=seed, policy=policy, days=days, experiment=spec
    )
    assert run.grey is not None
    return {**run.grey.summary(), "cpu_s": time.process_time() - started}


def pooled_truth(grey: dict[str, Any]) -> float:
    """The true conversion over both arms of a grey test: with one policy in both, what
    that policy gives on all buyers (a rollout), by the same truth as the arms'."""
    arms = grey["arms"]
    return sum(a["true"] * a["lab_sessions"] for a in arms) / sum(a["lab_sessions"] for a in arms)


def _pool_map(fn: Any, jobs: list[Any]) -> list[Any]:
    """`fn` over `jobs` on two worker processes (the machine has two cores), in order."""
    with ProcessPoolExecutor(max_workers=2) as pool:
        return list(pool.map(fn, jobs))


def _grey_runs(what: str, jobs: list[GreyJob]) -> list[dict[str, Any]]:
    """`grey_job` over `jobs`, saying how long they took (wall and the workers' CPU)."""
    started = time.perf_counter()
    runs = _pool_map(grey_job, jobs)
    cpu = sum(r["cpu_s"] for r in runs)
    say(f"  ({what}: {time.perf_counter() - started:.0f} s, {cpu:.0f} CPU-s)")
    return runs


def _covers(u: dict[str, Any], truth: float | None) -> bool:
    return truth is not None and u["low"] <= truth <= u["high"]


def _hours(grey: dict[str, Any], at: int) -> float:
    return (at - grey["looks"][0]["at"]) / HOUR_MS


def _days_span(values: list[float]) -> str:
    if not values:
        return "–"
    ordered = sorted(values)
    return f"{median(ordered):.2f} ({ordered[0]:.2f}–{ordered[-1]:.2f})"


def coverage_rows(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Section 8 (a): per run, whether the last interval covers the true uplift (of every
    order, and of the orders due by the end), and whether every hourly look covered the
    true uplift of the orders due by then."""
    final_all = final_due = path = 0
    widths, estimates, truths, closest = [], [], [], []
    for grey in runs:
        arm = grey["arms"][1]
        up = arm["uplift"]
        final_all += _covers(up, arm["true_uplift"])
        final_due += _covers(up, arm["true_uplift_due"])
        looks = [
            look["uplift"]["treatment"]
            for look in grey["looks"]
            if look["uplift"]["treatment"]["true_due"] is not None
        ]
        path += all(_covers(u, u["true_due"]) for u in looks)
        closest.append(max(_reach(u) for u in looks))
        widths.append(up["high"] - up["low"])
        estimates.append(up["points"])
        truths.append(arm["true_uplift"])
    return {
        "final_all": final_all,
        "final_due": final_due,
        "path": path,
        "width": _mean(widths),
        "estimate": _mean(estimates),
        "truth": _mean(truths),
        "stops": sum(1 for g in runs if any(a["stopped"] for a in g["arms"])),
        "closest": sorted(closest),
    }


def _reach(u: dict[str, Any]) -> float:
    """How far the true uplift due by a look lies from the estimate, in the interval's
    half-widths on its side (above 1: outside); 0 before the interval is more than the
    full range (MIN_COUNT)."""
    if u["points"] is None or u["high"] - u["low"] >= 2.0:
        return 0.0
    gap = u["true_due"] - u["points"]
    side = u["high"] - u["points"] if gap > 0 else u["points"] - u["low"]
    return abs(gap) / side if side > 0 else 0.0


def coverage_line(name: str, runs: list[dict[str, Any]]) -> None:
    c = coverage_rows(runs)
    n = len(runs)
    say(
        f"| {name} | {n} | {c['final_all']}/{n} ({c['final_all'] / n:.0%}) "
        f"| {c['final_due']}/{n} ({c['final_due'] / n:.0%}) "
        f"| {c['path']}/{n} ({c['path'] / n:.0%}) | {c['truth'] * 100:+.2f} "
        f"| {c['estimate'] * 100:+.2f} | ±{c['width'] * 50:.2f} "
        f"| {median(c['closest']):.2f} ({c['closest'][-1]:.2f}) | {c['stops']} |"
    )


def detection(runs: list[dict[str, Any]]) -> tuple[list[float], int, int]:
    """Section 8 (b): per run, the first look (in days) at which the uplift interval
    excludes 0 above it; runs where it never did; runs where it excluded 0 below it."""
    found, wrong = [], 0
    for grey in runs:
        first = next(
            (look for look in grey["looks"] if look["uplift"]["treatment"]["low"] > 0), None
        )
        if first is not None:
            found.append(_hours(grey, first["at"]) / 24)
        wrong += any(look["uplift"]["treatment"]["high"] < 0 for look in grey["looks"])
    return found, len(runs) - len(found), wrong


def stop_rows(name: str, runs: list[dict[str, Any]]) -> None:
    """Section 8 (c), (d): how many runs had an arm stopped, when (hours since the test's
    first buyer, and the clock time) and by which guardrail."""
    hours, clocks, fired = [], [], Counter[str]()
    for grey in runs:
        stop = grey["arms"][1]["stopped"]
        if stop is None:
            continue
        hours.append((stop["at"] - grey["started_at"]) / HOUR_MS)
        clocks.append(f"{datetime.fromtimestamp(stop['at'] / 1000, TZ):%H:%M}")
        fired[stop["guardrail"]] += 1
    control = _mean([g["arms"][0]["replies_within_deadline"]["value"] for g in runs])
    arm = _mean([g["arms"][1]["replies_within_deadline"]["value"] for g in runs])
    n = len(runs)
    span = (
        f"{median(hours):.1f} h ({min(hours):.1f}–{max(hours):.1f}); "
        f"clock {min(clocks)}–{max(clocks)}"
        if hours
        else "–"
    )
    say(
        f"| {name} | {n} | {len(hours)}/{n} ({len(hours) / n:.0%}) | {span} "
        f"| {', '.join(f'{k} {v}' for k, v in fired.items()) or '–'} "
        f"| {control:.2%} / {arm:.2%} |"
    )


def _machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"nproc {os.cpu_count()}, {model}"


def grey_section(seed: int) -> None:
    """Section 8."""
    seeds = range(seed, seed + GREY_SEEDS)
    rails = ", ".join(f"{k} {v}" for k, v in GREY_RAILS.items())
    say(
        f"\n## grey tests in the lab: presale.toml, steady, seeds {seeds.start}-"
        f"{seeds.stop - 1}, split 50/50, guardrails {rails}; {_machine()}"
    )
    week, rails = f"{GREY_SEEDS} × {GREY_DAYS} days", GREY_RAILS
    conv = _grey_runs(f"{week} of conversion:high against efficiency",
                      [(CONV_HIGH, GREY_DAYS, s, rails) for s in seeds])  # fmt: skip
    same = _grey_runs(f"{week} of two efficiency arms",
                      [(SAME, GREY_DAYS, s, rails) for s in seeds])  # fmt: skip
    edge = _grey_runs(f"{week} of two efficiency arms, guardrails at +0% and -0pp",
                      [(SAME, GREY_DAYS, s, ZERO_RAILS) for s in seeds])  # fmt: skip
    harm = _grey_runs(f"{GREY_SEEDS} days of {ONE_SLOW_AGENT}",
                      [(LAB_HARM, 1, s, rails) for s in seeds])  # fmt: skip
    plain = _grey_runs(f"{GREY_SEEDS} days of average",
                       [(PLAIN_HARM, 1, s, rails) for s in seeds])  # fmt: skip
    day = _grey_runs(f"{GREY_SEEDS} days of conversion:high against efficiency",
                     [(CONV_HIGH, 1, s, rails) for s in seeds])  # fmt: skip
    alone = {
        policy: [pooled_truth(g) for g in _grey_runs(f"{GREY_SEEDS} days of {policy} alone",
                                                     [(arms, 1, s, {}) for s in seeds])]
        for policy, arms in (("efficiency", SAME), ("conversion:high", HIGH_ALONE))
    }  # fmt: skip

    say(f"\n### (a) coverage of the true uplift, {GREY_DAYS} days")
    say(
        "| arms | runs | final interval covers true uplift | covers true uplift due by the end "
        "| every hourly look covers | true uplift, pp (mean) | estimate, pp (mean) "
        "| final half-width, pp (mean) | closest approach, median (max) "
        "| runs with an arm stopped |"
    )
    say("|---|---|---|---|---|---|---|---|---|---|")
    coverage_line("efficiency / conversion:high", conv)
    coverage_line("efficiency / efficiency", same)

    found, never, wrong = detection(conv)
    say(f"\n### (b) detection: conversion:high over efficiency, {GREY_DAYS} days")
    say(
        f"- days until the uplift interval excludes 0: median (range) {_days_span(found)}; "
        f"not within {GREY_DAYS} days: {never}/{len(conv)}; below 0 at any look: {wrong}"
    )
    say(
        f"- true uplift side by side, {GREY_DAYS} days (mean over seeds): "
        f"{_mean([g['arms'][1]['true_uplift'] for g in conv]) * 100:+.2f} pp"
    )
    side = [(g["arms"][0]["true"], g["arms"][1]["true"]) for g in day]
    say(
        "- one day, true conversion (mean over seeds): side by side efficiency "
        f"{_mean([c for c, _ in side]):.2%}, conversion:high {_mean([t for _, t in side]):.2%}, "
        f"uplift {_mean([t - c for c, t in side]) * 100:+.2f} pp; each alone on all buyers "
        f"(both arms one policy) {_mean(alone['efficiency']):.2%} and "
        f"{_mean(alone['conversion:high']):.2%}, uplift "
        f"{(_mean(alone['conversion:high']) - _mean(alone['efficiency'])) * 100:+.2f} pp"
    )

    say("\n### (c) a harmful arm, one day; (d) false stops, two efficiency arms")
    say(
        "| treatment | runs | stopped | when (median, range) | guardrail "
        "| replies within deadline, control / treatment (day) |"
    )
    say("|---|---|---|---|---|---|")
    stop_rows(f"{ONE_SLOW_AGENT} (lab only), 1 day", harm)
    stop_rows("average (a plain mode), 1 day", plain)
    stop_rows(f"efficiency (identical arms), {GREY_DAYS} days", same)
    stop_rows(f"efficiency (identical arms), {GREY_DAYS} days, guardrails +0% / -0pp", edge)
    say(
        "  promise for identical arms: at most alpha per guardrail and arm, "
        "2 × 0.05 = 0.10 here (one arm compared); sharp only with the guardrails at +0% and "
        "-0pp, where identical arms sit on the guardrail's edge"
    )


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}" if value < 10 else f"{value:.0f}"


def main(seed: int, only: str | None = None) -> None:
    say(f"fenliu policy-lab bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    say(f"machine: {platform.platform()}, Python {platform.python_version()}")
    started = time.perf_counter()
    if only == "oracle":
        oracle_section(range(seed, seed + 3))
        say(f"\ndone in {time.perf_counter() - started:.0f}s")
        return
    if only == "frontier":
        frontier_section(range(seed, seed + 3))
        say(f"\ndone in {time.perf_counter() - started:.0f}s")
        return
    if only == "replies":
        replies_section(range(seed, seed + 3))
        say(f"\ndone in {time.perf_counter() - started:.0f}s")
        return
    if only == "grey":
        grey_section(seed)
        say(f"\ndone in {time.perf_counter() - started:.0f}s")
        return
    shop = load_shop_file(BIG)
    for scenario in ("steady", "double11"):
        policy_table(shop, scenario, seed)
    estimate_seeds(shop, range(seed, seed + 3))
    presale_question(shop, seed)
    speed(seed)
    oracle_section(range(seed, seed + 3))
    frontier_section(range(seed, seed + 3))
    replies_section(range(seed, seed + 3))
    grey_section(seed)
    say(f"\ndone in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--only",
        choices=("oracle", "frontier", "replies", "grey"),
        help="run section 5, 6, 7 or 8 alone",
    )
    args = parser.parse_args()
    main(args.seed, args.only)
