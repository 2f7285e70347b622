"""What one policy's run achieved, computed from its `Trace` alone (pure, deterministic).

`measure(trace)` returns plain JSON data:

    policy, scenario, seed, inquiries
    conversion   {served, orders, rate, expected_rate, by_group: {g: {the same}}}
    waits        {served, p50_s, p95_s, max_s, by_group: {g: {served, p50_s, p95_s, max_s}}}
    replies      {deadline_s, answered, unanswered, late_unanswered, within_deadline,
                  share_within, p50_s, p95_s, max_s, first: {the same, over first messages},
                  gave_up, reassigned, moves: {reason: n}}
    abandonment  {accepted, left, expired, rejected, waiting, left_rate, expired_rate}
    fairness     {overall: F, by_group: {g: F}}, F = {agents, assignments, unmeasured,
                  per_hour: {agent: rate}, jain, gini, max_min_share}
    estimates    {queued_served, zero_wait, no_estimate, measured, long_waits,
                  fenliu|asterisk|rocketchat: {mare, bias, mae_s, mare_long},
                  best_baseline, ratio, ratio_mae, ratio_long}
    headline     {conversion, expected_conversion, orders, wait_p50_s, wait_p95_s,
                  wait_max_s, abandonment, reply_share_within, reply_p95_s,
                  first_reply_share_within, first_reply_p95_s, reassigned,
                  jain, gini, max_min_share,
                  fenliu|asterisk|rocketchat_mare and _mae_s, oracle_share (None)}

`add_oracle_shares(measures, conversion_groups)` then compares policies run on the same
buyers: each policy gets `oracle_share` {overall, conversion_groups, groups} and the headline
`oracle_share` (its `conversion_groups` figure) — see "Oracle share" below.

Choices (the edge cases):

* A buyer's group is `served_group or group`; a buyer with neither is counted under "(none)".
* `expected_rate` is the mean order chance of the served buyers (`world.order_chance` of
  the serving agent's true rate and the buyer's intent, times `world.reply_survival` of the
  buyer's waits for replies): what `rate` would be without the luck of the order and
  patience draws (about ±0.9 points on a presale day of one seed), so policies compare on
  it with less noise. Buyers served by an agent the trace does not know are left out of it.
* Replies (contract §3.6) are the buyer's waits for them, from its message to the agent's
  next one, whichever agent answers (a buyer moved to another agent waits on). A reply is
  within the deadline at `deadline_ms` or less (the shop's `[replies] deadline`, recorded in
  the trace). `share_within` is Taobao's 3-minute response rate: answered within the
  deadline over every message whose fate is known, that is the answered ones and those
  still owed past the deadline when their session (or the run) ended; a message owed for
  less when its session ended is left out (it might yet have been answered in time).
  Percentiles are of answered messages; `unanswered` counts the others apart. `first` is
  the same over each inquiry's first message (a buyer moved to another agent waits on).
  `gave_up` counts buyers who left waiting for a reply; `moves` counts moves to another
  agent in session by `assignment.reason`, `reassigned` those for `unanswered`.
* Percentiles are nearest-rank (the smallest observation with at least p% at or below it),
  so every figure is a wait that really happened. No observation: None.
* Abandonment is among *accepted* inquiries (all but the rejected ones, the still waiting
  included); the headline's `abandonment` is the share that left, expiry is reported apart.
* Fairness counts assignments per agent per online hour. Agents never online (and agents the
  trace does not know) are left out; their assignments are counted as `unmeasured`. Within a
  group, an agent's assignments are those whose buyer's group is that group; a buyer moved
  to another agent in session counts for its last agent (`agent_id`). Nobody with any
  assignment yet: Jain 1, Gini 0 (equal shares). `max_min_share` is None when the smallest
  rate is 0 (infinite, and not JSON) or there are no agents.
* Wait-estimate error is measured on buyers who were queued, then served, with a real wait
  (served_at - queued_at) above 0 and an announced Fenliu estimate: all three estimators are
  judged on the same buyers. Relative error = (estimate - real) / real; MARE is the mean of
  its absolute value, bias its mean. Zero waits and missing estimates are counted apart.
  A relative error is large for any short wait (told 60 s, served after 2 s: 29), so MARE
  is mostly decided by the shortest waits. Two figures that are not are given beside it:
  `mae_s`, the mean absolute error in seconds, and `mare_long`, the MARE of the buyers who
  really waited at least LONG_WAIT_S (None if none did). `best_baseline` and `ratio` are
  per figure: `ratio` (MARE), `ratio_mae`, `ratio_long`.
* Oracle share: how much of the oracle's uplift over efficiency a policy achieves, on the
  same buyers (common random numbers): (E_policy − E_efficiency) / (E_oracle −
  E_efficiency), where E is expected conversion (`expected_rate`, free of the order
  draws' luck). `conversion_groups` measures E over the buyers of the groups the policy
  routes by conversion mode (its own or the shop's mode; the unmatched pool's buyers count
  under the group their agent is listed in), which is where routing by conversion can pay;
  `overall` over every served buyer. None when a reference run (the `efficiency` and
  `oracle` policies) is missing (`fenliu simulate` runs any it was not asked for), when
  the policy routes no group by conversion (for `conversion_groups`), or when the oracle
  gains less than MIN_UPLIFT over efficiency (a share of nothing is noise). Efficiency's
  share is 0 and the oracle's 1 by definition.
* Baselines see the history strictly before the buyer entered the queue, per queue (the
  queue's group; None is the shop-wide pool), as Asterisk keeps a hold time per queue and
  Rocket.Chat its chat statistics per department.
* Asterisk: the average starts at 0 (as `app_queue` does) and, on each answer of a queued
  buyer of that queue (zero waits included), becomes (3·old + wait) / 4, in floats.
* Rocket.Chat: ((position - 1) / cap + 1) × mean duration (session_ended - served_at) of the
  last 100 chats ended before the queue entry; chats of the queue's group, or all the shop's
  chats for the pool. No chat yet: 0. Position missing: 1. cap = mean of the positive caps of
  the queue's agents (agents of the group, or all agents for the pool); none capped: 1.
* `best_baseline` is the baseline with the lower MARE (Asterisk on a tie); `ratio` is
  fenliu MARE / that MARE, None if that MARE is 0 or nothing was measured. `ratio_mae` and
  `ratio_long` compare with whichever baseline is better on that figure.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import accumulate
from typing import Any

from daemon.lab.trace import AgentRecord, InquiryRecord, Trace
from daemon.lab.world import order_chance, reply_survival

HOUR_MS = 3_600_000
NO_GROUP = "(none)"
RECENT_CHATS = 100  # Rocket.Chat's default Livechat_number_most_recent_chats_estimate_wait_time
ESTIMATORS = ("fenliu", "asterisk", "rocketchat")
BASELINES = ("asterisk", "rocketchat")
LONG_WAIT_S = 30.0  # `mare_long` counts the buyers who really waited at least this long
MIN_UPLIFT = 1e-4  # an oracle uplift (in conversion) below this gives no oracle share


def measure(trace: Trace) -> dict[str, Any]:
    """Every figure of one policy's run (see the module docstring for the schema)."""
    served = [r for r in trace.inquiries if r.served_at is not None]
    conversion = _conversion(served, trace.agents)
    waits = _waits(served)
    replies = _replies(served, trace.deadline_ms)
    abandonment = _abandonment(trace.inquiries)
    fairness = _fairness(trace)
    estimates = _estimate_errors(trace)
    overall = fairness["overall"]
    headline = {
        "conversion": conversion["rate"],
        "expected_conversion": conversion["expected_rate"],
        "orders": conversion["orders"],
        "wait_p50_s": waits["p50_s"],
        "wait_p95_s": waits["p95_s"],
        "wait_max_s": waits["max_s"],
        "abandonment": abandonment["left_rate"],
        "reply_share_within": replies["share_within"],
        "reply_p95_s": replies["p95_s"],
        "first_reply_share_within": replies["first"]["share_within"],
        "first_reply_p95_s": replies["first"]["p95_s"],
        "reassigned": replies["reassigned"],
        "jain": overall["jain"],
        "gini": overall["gini"],
        "max_min_share": overall["max_min_share"],
        **{f"{name}_mare": estimates[name]["mare"] for name in ESTIMATORS},
        **{f"{name}_mae_s": estimates[name]["mae_s"] for name in ESTIMATORS},
        "oracle_share": None,  # add_oracle_shares, which compares runs
    }
    return {
        "policy": trace.policy,
        "scenario": trace.scenario,
        "seed": trace.seed,
        "inquiries": len(trace.inquiries),
        "conversion": conversion,
        "waits": waits,
        "replies": replies,
        "abandonment": abandonment,
        "fairness": fairness,
        "estimates": estimates,
        "headline": headline,
    }


# ----------------------------------------------------------------- small pure helpers


def group_of(record: InquiryRecord) -> str:
    """The group a buyer is counted under: where it was served, else what it asked for."""
    return record.served_group or record.group or NO_GROUP


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of `values` (any order); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def jain(values: Sequence[float]) -> float | None:
    """Jain's fairness index (Σx)² / (n·Σx²): 1 when equal, 1/n when one takes all."""
    if not values:
        return None
    squares = sum(x * x for x in values)
    return 1.0 if squares == 0 else sum(values) ** 2 / (len(values) * squares)


def gini(values: Sequence[float]) -> float | None:
    """Gini coefficient Σ|xi - xj| / (2·n²·mean): 0 when equal, (n-1)/n when one takes all."""
    if not values:
        return None
    total = sum(values)
    if total == 0:
        return 0.0
    n = len(values)
    ranked = sum(i * x for i, x in enumerate(sorted(values), start=1))
    return 2 * ranked / (n * total) - (n + 1) / n


def max_min_share(values: Sequence[float]) -> float | None:
    """Largest rate over smallest; None without agents or when the smallest is 0."""
    if not values or min(values) == 0:
        return None
    return max(values) / min(values)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _by_group(records: Iterable[InquiryRecord]) -> dict[str, list[InquiryRecord]]:
    groups: dict[str, list[InquiryRecord]] = {}
    for record in records:
        groups.setdefault(group_of(record), []).append(record)
    return {g: groups[g] for g in sorted(groups)}


# ----------------------------------------------------------------- conversion, waits, leaving


def _conversion_of(
    served: Sequence[InquiryRecord], agents: Mapping[str, AgentRecord]
) -> dict[str, Any]:
    orders = sum(1 for r in served if r.ordered)
    chances = [
        order_chance(agent.true_conversion, r.intent) * reply_survival(r.reply_waits_ms)
        for r in served
        if (agent := agents.get(r.agent_id or "")) is not None
    ]
    return {
        "served": len(served),
        "orders": orders,
        "rate": _ratio(orders, len(served)),
        "expected_rate": sum(chances) / len(chances) if chances else None,
    }


def _conversion(
    served: Sequence[InquiryRecord], agents: Mapping[str, AgentRecord]
) -> dict[str, Any]:
    by_group = {g: _conversion_of(rs, agents) for g, rs in _by_group(served).items()}
    return {**_conversion_of(served, agents), "by_group": by_group}


def _waits_of(served: Sequence[InquiryRecord]) -> dict[str, Any]:
    seconds = [(r.wait_ms or 0) / 1000 for r in served]
    return {
        "served": len(seconds),
        "p50_s": percentile(seconds, 50),
        "p95_s": percentile(seconds, 95),
        "max_s": max(seconds, default=None),
    }


def _waits(served: Sequence[InquiryRecord]) -> dict[str, Any]:
    by_group = {g: _waits_of(rs) for g, rs in _by_group(served).items()}
    return {**_waits_of(served), "by_group": by_group}


def _replies_of(waits: Sequence[int], owed: Sequence[int], deadline_ms: int) -> dict[str, Any]:
    """The reply figures of answered `waits` and `owed` messages (ms): module docstring."""
    seconds = [w / 1000 for w in waits]
    within = sum(1 for w in waits if w <= deadline_ms)
    late = sum(1 for w in owed if w > deadline_ms)
    return {
        "answered": len(waits),
        "unanswered": len(owed),
        "late_unanswered": late,
        "within_deadline": within,
        "share_within": _ratio(within, len(waits) + late),
        "p50_s": percentile(seconds, 50),
        "p95_s": percentile(seconds, 95),
        "max_s": max(seconds, default=None),
    }


def _replies(served: Sequence[InquiryRecord], deadline_ms: int) -> dict[str, Any]:
    answered = [w for r in served for w in r.replies_ms]
    owed = [r.unanswered_ms for r in served if r.unanswered_ms is not None]
    first = [r.replies_ms[0] for r in served if r.replies_ms]
    first_owed = [
        r.unanswered_ms for r in served if r.unanswered_ms is not None and not r.replies_ms
    ]
    moves = Counter(move[3] for r in served for move in r.moves)
    return {
        "deadline_s": deadline_ms / 1000,
        **_replies_of(answered, owed, deadline_ms),
        "first": _replies_of(first, first_owed, deadline_ms),
        "gave_up": sum(1 for r in served if r.gave_up_at is not None),
        "reassigned": moves["unanswered"],
        "moves": dict(sorted(moves.items())),
    }


def _abandonment(inquiries: Sequence[InquiryRecord]) -> dict[str, Any]:
    outcomes = Counter(r.outcome for r in inquiries)
    accepted = len(inquiries) - outcomes["rejected"]
    return {
        "accepted": accepted,
        "left": outcomes["left"],
        "expired": outcomes["expired"],
        "rejected": outcomes["rejected"],
        "waiting": outcomes["waiting"],
        "left_rate": _ratio(outcomes["left"], accepted),
        "expired_rate": _ratio(outcomes["expired"], accepted),
    }


# ----------------------------------------------------------------- fairness


def _fairness_of(trace: Trace, agent_ids: Sequence[str], counts: Counter[str]) -> dict[str, Any]:
    per_hour = {a: counts[a] / (trace.agents[a].online_ms / HOUR_MS) for a in agent_ids}
    rates = list(per_hour.values())
    measured = sum(counts[a] for a in agent_ids)
    return {
        "agents": len(agent_ids),
        "assignments": measured,
        "unmeasured": sum(counts.values()) - measured,
        "per_hour": per_hour,
        "jain": jain(rates),
        "gini": gini(rates),
        "max_min_share": max_min_share(rates),
    }


def _fairness(trace: Trace) -> dict[str, Any]:
    online = sorted(a for a, rec in trace.agents.items() if rec.online_ms > 0)
    assigned = [r for r in trace.inquiries if r.agent_id is not None and r.served_at is not None]
    overall = _fairness_of(trace, online, Counter(r.agent_id for r in assigned if r.agent_id))
    groups = sorted({g for rec in trace.agents.values() for g in rec.groups})
    by_group = {}
    for g in groups:
        members = [a for a in online if g in trace.agents[a].groups]
        counts = Counter(r.agent_id for r in assigned if r.agent_id and group_of(r) == g)
        by_group[g] = _fairness_of(trace, members, counts)
    return {"overall": overall, "by_group": by_group}


# ----------------------------------------------------------------- wait-estimate errors


def _queue_wait_s(record: InquiryRecord) -> float:
    assert record.queued_at is not None and record.served_at is not None
    return (record.served_at - record.queued_at) / 1000


def asterisk_estimates(queued: Sequence[InquiryRecord]) -> list[float]:
    """Asterisk's announced hold time (s) for each of `queued` (queued and served buyers)."""
    events: list[tuple[int, int, int]] = []  # (time, 0 = entry / 1 = answer, index)
    for i, r in enumerate(queued):
        assert r.queued_at is not None and r.served_at is not None
        events += [(r.queued_at, 0, i), (r.served_at, 1, i)]
    average: dict[str | None, float] = {}
    out = [0.0] * len(queued)
    for _, kind, i in sorted(events):  # at equal times the entry comes first: strictly before
        key = queued[i].queue_group
        if kind == 0:
            out[i] = average.get(key, 0.0)
        else:
            average[key] = (3 * average.get(key, 0.0) + _queue_wait_s(queued[i])) / 4
    return out


def _queue_cap(trace: Trace, queue_group: str | None) -> float:
    agents = [
        a for a, rec in trace.agents.items() if queue_group is None or queue_group in rec.groups
    ]
    caps = [c for a in agents if (c := trace.caps.get(a)) is not None and c > 0]
    return sum(caps) / len(caps) if caps else 1.0


def _chat_history(trace: Trace, queue_group: str | None) -> tuple[list[int], list[float]]:
    """End times of the queue's completed chats in order, and prefix sums of durations (s)."""
    chats = sorted(
        (r.session_ended, r.inquiry_id, (r.session_ended - r.served_at) / 1000)
        for r in trace.inquiries
        if r.served_at is not None
        and r.session_ended is not None
        and (queue_group is None or group_of(r) == queue_group)
    )
    return [c[0] for c in chats], [0.0, *accumulate(c[2] for c in chats)]


def recent_chat_mean(ends: Sequence[int], prefix: Sequence[float], before: int) -> float:
    """Mean duration of the last `RECENT_CHATS` chats that ended before `before` (0 if none)."""
    hi = bisect_left(ends, before)
    lo = max(0, hi - RECENT_CHATS)
    return 0.0 if hi == lo else (prefix[hi] - prefix[lo]) / (hi - lo)


def rocketchat_estimates(trace: Trace, queued: Sequence[InquiryRecord]) -> list[float]:
    """Rocket.Chat's estimated wait (s) for each of `queued` (queued and served buyers)."""
    histories: dict[str | None, tuple[list[int], list[float]]] = {}
    caps: dict[str | None, float] = {}
    out = []
    for r in queued:
        key = r.queue_group
        if key not in histories:
            histories[key] = _chat_history(trace, key)
            caps[key] = _queue_cap(trace, key)
        assert r.queued_at is not None
        mean = recent_chat_mean(*histories[key], r.queued_at)
        position = r.queue_position if r.queue_position is not None else 1
        out.append(((position - 1) / caps[key] + 1) * mean)
    return out


def estimate_points(trace: Trace) -> list[tuple[float, float, float, float]]:
    """(real, fenliu, asterisk, rocketchat) seconds for every measured buyer, in trace order."""
    queued = [r for r in trace.inquiries if r.queued_at is not None and r.served_at is not None]
    asterisk = asterisk_estimates(queued)
    rocket = rocketchat_estimates(trace, queued)
    return [
        (_queue_wait_s(r), float(r.estimate_s), a, c)
        for r, a, c in zip(queued, asterisk, rocket, strict=True)
        if r.estimate_s is not None and _queue_wait_s(r) > 0
    ]


def _error(pairs: Sequence[tuple[float, float]]) -> dict[str, float | None]:
    """MARE, bias, mean absolute error (s) and the MARE of long waits of (real, estimate)."""
    if not pairs:
        return {"mare": None, "bias": None, "mae_s": None, "mare_long": None}
    relative = [(estimate - real) / real for real, estimate in pairs]
    long = [abs(e) for e, (real, _) in zip(relative, pairs, strict=True) if real >= LONG_WAIT_S]
    return {
        "mare": sum(abs(e) for e in relative) / len(relative),
        "bias": sum(relative) / len(relative),
        "mae_s": sum(abs(estimate - real) for real, estimate in pairs) / len(pairs),
        "mare_long": sum(long) / len(long) if long else None,
    }


def _versus_best(
    errors: dict[str, dict[str, float | None]], figure: str
) -> tuple[str | None, float | None]:
    """The baseline better on `figure` (the first on a tie) and Fenliu's figure / its figure."""
    scored = [(value, b) for b in BASELINES if (value := errors[b][figure]) is not None]
    if not scored:
        return None, None
    best_value, best = min(scored, key=lambda s: s[0])
    fenliu = errors["fenliu"][figure]
    return best, (fenliu / best_value if fenliu is not None and best_value > 0 else None)


def _estimate_errors(trace: Trace) -> dict[str, Any]:
    queued = [r for r in trace.inquiries if r.queued_at is not None and r.served_at is not None]
    zero = sum(1 for r in queued if _queue_wait_s(r) <= 0)
    missing = sum(1 for r in queued if _queue_wait_s(r) > 0 and r.estimate_s is None)
    points = estimate_points(trace)
    errors = {name: _error([(p[0], p[k]) for p in points]) for k, name in enumerate(ESTIMATORS, 1)}
    best, ratio = _versus_best(errors, "mare")
    return {
        "queued_served": len(queued),
        "zero_wait": zero,
        "no_estimate": missing,
        "measured": len(points),
        "long_waits": sum(1 for p in points if p[0] >= LONG_WAIT_S),
        **errors,
        "best_baseline": best,
        "ratio": ratio,
        "ratio_mae": _versus_best(errors, "mae_s")[1],
        "ratio_long": _versus_best(errors, "mare_long")[1],
    }


# ----------------------------------------------------------------- oracle share


def expected_conversion(m: Mapping[str, Any], groups: Sequence[str] | None = None) -> float | None:
    """Expected conversion of a run's served buyers, or of those of `groups` only."""
    conv = m["conversion"]
    if groups is None:
        rate: float | None = conv["expected_rate"]
        return rate
    parts = [conv["by_group"][g] for g in groups if g in conv["by_group"]]
    parts = [p for p in parts if p["expected_rate"] is not None and p["served"]]
    served = sum(p["served"] for p in parts)
    return sum(p["expected_rate"] * p["served"] for p in parts) / served if served else None


def oracle_share(
    m: Mapping[str, Any],
    efficiency: Mapping[str, Any],
    oracle: Mapping[str, Any],
    groups: Sequence[str] | None = None,
) -> float | None:
    """(E_m − E_efficiency) / (E_oracle − E_efficiency) (module docstring)."""
    e, base, top = (expected_conversion(x, groups) for x in (m, efficiency, oracle))
    if e is None or base is None or top is None or top - base < MIN_UPLIFT:
        return None
    return (e - base) / (top - base)


def add_oracle_shares(
    measures: Mapping[str, dict[str, Any]], conversion_groups: Mapping[str, Sequence[str]]
) -> None:
    """Give each policy's measures its `oracle_share` (module docstring); the references
    are the runs named "efficiency" and "oracle", if present."""
    efficiency, oracle = measures.get("efficiency"), measures.get("oracle")
    for name, m in measures.items():
        groups = list(conversion_groups.get(name, ()))
        overall = within = None
        if efficiency is not None and oracle is not None:
            overall = oracle_share(m, efficiency, oracle)
            within = oracle_share(m, efficiency, oracle, groups) if groups else None
        m["oracle_share"] = {"overall": overall, "conversion_groups": within, "groups": groups}
        m["headline"]["oracle_share"] = within
