"""What a reload changes, per shop, and what it does at once to the buyers in it (contract §5,
Dry run and Apply).

`dry_run` works it out on copies of the live shops and applies nothing; `apply` reconfigures
the engine for real and says the same of what it did, so the two always agree (a test holds
the dry run to what the reload then does). For each shop added, removed or modified:

- `changes`: one line per changed setting, as `path: before -> after` (agents and groups
  by id: `agent a1 cap: null -> 3`, `group g agents: +a9 -a3`, `agent a9 added`);
- `effects`, of the shop's live state: `assigned` (queued buyers served at once),
  `queued` (buyers put in a line), `moved` (queued buyers now in another line), `expired`
  (buyers whose wait ran out), `above_cap` (open sessions above their agent's new cap; they
  end as usual, nobody is taken away).

Shops whose file did not change are not listed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from daemon.core.config import ShopConfig
from daemon.core.engine import Engine
from daemon.core.shop import ShopEngine
from topics.events import Assignment, OutputEvent, QueueStatus, QueueUpdate

Change = Literal["added", "removed", "modified"]
EFFECTS = ("assigned", "queued", "moved", "expired", "above_cap")
MAX_LINES = 50  # change lines listed per shop; the rest are counted in one line


@dataclass(frozen=True, slots=True)
class ShopPlan:
    """What a reload changes in one shop (module docstring)."""

    shop: str
    change: Change
    changes: tuple[str, ...]
    effects: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EFFECTS, 0))

    def as_json(self) -> dict[str, Any]:
        """The shape `fenliu reload --json` prints (contract §5)."""
        return {
            "shop": self.shop,
            "change": self.change,
            "changes": list(self.changes),
            "effects": dict(self.effects),
        }


@dataclass(frozen=True, slots=True)
class Capture:
    """What a dry run needs of the live engine, copied out of it: the modified shops' files
    in force and their state as snapshots, and the engine's clock."""

    configs: Mapping[str, ShopConfig]
    snapshots: Mapping[str, dict[str, Any]]
    now: int


def capture(engine: Engine, shops: Mapping[str, ShopConfig]) -> Capture:
    """Copy out what `shops` would change (cheap: one snapshot per modified shop), so that
    `work_out` can run anywhere, a worker thread included."""
    modified = _modified(engine.configs, shops)
    snapshots = {s: engine.snapshot_shop(s) for s in modified if s in engine.shops}
    return Capture(dict(engine.configs), snapshots, engine.now)


def work_out(seen: Capture, shops: Mapping[str, ShopConfig], now: int) -> list[ShopPlan]:
    """What `apply` would report for `shops`, worked out on copies made from `seen`."""
    modified = {s: shops[s] for s in _modified(seen.configs, shops)}
    copy = Engine({s: seen.configs[s] for s in modified})
    for shop_id, snapshot in seen.snapshots.items():
        copy.restore_shop(shop_id, snapshot)
    _, plans = _reconfigure(copy, modified, max(now, seen.now))
    return _outline(seen.configs, shops, {p.shop: p for p in plans})


def dry_run(engine: Engine, shops: Mapping[str, ShopConfig], now: int) -> list[ShopPlan]:
    """What `apply(engine, shops, now)` would report, worked out on copies: `engine` is not
    changed."""
    return work_out(capture(engine, shops), shops, now)


def apply(
    engine: Engine, shops: Mapping[str, ShopConfig], now: int
) -> tuple[list[OutputEvent], list[ShopPlan]]:
    """Reconfigure `engine`; its outputs, and what it changed in the form of `dry_run`."""
    before = dict(engine.configs)
    outputs, plans = _reconfigure(engine, shops, now)
    return outputs, _outline(before, shops, {p.shop: p for p in plans})


def _reconfigure(
    engine: Engine, shops: Mapping[str, ShopConfig], now: int
) -> tuple[list[OutputEvent], list[ShopPlan]]:
    """Reconfigure for real; the plans of the shops that existed and changed."""
    modified = _modified(engine.configs, shops)
    old = {s: engine.configs[s] for s in modified}
    lines = {s: _lines(engine.shops[s]) for s in modified if s in engine.shops}
    outputs = engine.reconfigure(shops, now)
    own: dict[str, list[OutputEvent]] = {}
    for output in outputs:
        own.setdefault(output.shop_id or "", []).append(output)
    plans = []
    for shop_id in modified:
        shop = engine.shops.get(shop_id)
        effects = (
            _effects(shop, lines.get(shop_id, {}), own.get(shop_id, []))
            if shop is not None
            else dict.fromkeys(EFFECTS, 0)
        )
        plans.append(ShopPlan(shop_id, "modified", changes(old[shop_id], shops[shop_id]), effects))
    return outputs, plans


def _modified(before: Mapping[str, ShopConfig], after: Mapping[str, ShopConfig]) -> list[str]:
    """The shops in both whose file changed."""
    return [s for s, c in after.items() if s in before and before[s] != c]


def _outline(
    before: Mapping[str, ShopConfig],
    after: Mapping[str, ShopConfig],
    modified: Mapping[str, ShopPlan],
) -> list[ShopPlan]:
    """Every changed shop in id order: added and removed ones from the files alone."""
    plans = []
    for shop_id in sorted(before.keys() | after.keys()):
        if shop_id in modified:
            plans.append(modified[shop_id])
        elif shop_id not in before:
            plans.append(ShopPlan(shop_id, "added", _described(after[shop_id])))
        elif shop_id not in after:
            plans.append(ShopPlan(shop_id, "removed", ("its events are rejected from now on",)))
    return plans


def _described(config: ShopConfig) -> tuple[str, ...]:
    groups = ", ".join(g.name for g in config.groups)
    return (f"{len(config.agents)} agents, groups {groups}, mode {config.mode.value}",)


def _lines(shop: ShopEngine) -> dict[str, str]:
    """Each queued buyer's line (its candidate's key)."""
    return {item.buyer_id: c.key for c in shop.all_candidates() for item in c.line.items}


def _effects(
    shop: ShopEngine, before: dict[str, str], outputs: list[OutputEvent]
) -> dict[str, int]:
    status = [o.status for o in outputs if isinstance(o, QueueUpdate)]
    after = _lines(shop)
    above = 0
    for agent in shop.agents.values():
        caps = [c.caps[agent.id] for c in shop.routing.of_agent(agent.id)]
        bounded = [cap for cap in caps if cap is not None]
        if bounded:
            above += max(0, agent.load - min(bounded))
    return {
        "assigned": sum(isinstance(o, Assignment) for o in outputs),
        "queued": status.count(QueueStatus.QUEUED),
        "moved": sum(1 for b, key in after.items() if b in before and before[b] != key),
        "expired": status.count(QueueStatus.EXPIRED),
        "above_cap": above,
    }


# ------------------------------------------------------------------------- the changes


def changes(old: ShopConfig, new: ShopConfig) -> tuple[str, ...]:
    """One line per changed setting (module docstring), at most MAX_LINES and a count."""
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    lines: list[str] = []
    for key in a.keys() | b.keys():
        if key in ("agents", "groups", "experiment"):
            continue
        _settings(key, a.get(key), b.get(key), lines)
    _experiment(a.get("experiment"), b.get("experiment"), lines)
    _rows("agent", "id", a["agents"], b["agents"], lines)
    _rows("group", "name", a["groups"], b["groups"], lines)
    lines.sort()
    if len(lines) > MAX_LINES:
        lines[MAX_LINES:] = [f"… and {len(lines) - MAX_LINES} more"]
    return tuple(lines)


def _settings(path: str, a: Any, b: Any, lines: list[str]) -> None:
    if a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a.keys() | b.keys():
            _settings(f"{path}.{key}", a.get(key), b.get(key), lines)
    elif isinstance(a, list) and isinstance(b, list) and all(isinstance(x, str) for x in a + b):
        gone, came = [x for x in a if x not in b], [x for x in b if x not in a]
        moves = [f"+{x}" for x in came] + [f"-{x}" for x in gone]
        lines.append(f"{path}: {' '.join(moves)}" if moves else f"{path}: order changed")
    else:
        lines.append(f"{path}: {_text(a)} -> {_text(b)}")


def _experiment(a: dict[str, Any] | None, b: dict[str, Any] | None, lines: list[str]) -> None:
    """A grey test started, ended, started again or given other guardrails (contract
    §3.7: an experiment is its name, arms and split; a guardrail may change as it runs)."""
    if a == b:
        return
    if a is not None and b is not None and all(a[k] == b[k] for k in ("name", "arms", "split")):
        _settings(f"experiment {a['name']} guardrails", a["guardrails"], b["guardrails"], lines)
        return
    if a is not None:
        again = b is not None and a["name"] == b["name"]
        tail = ", its figures start afresh" if again else ""
        lines.append(f"experiment {a['name']} ends (its figures stay in the report){tail}")
    if b is not None:
        arms = ", ".join(f"{arm}={policy} {b['split'][arm]}%" for arm, policy in b["arms"].items())
        rails = ", ".join(f"{k} {v}" for k, v in b["guardrails"].items()) or "none"
        lines.append(f"experiment {b['name']} starts: {arms}; guardrails {rails}")


def _rows(kind: str, key: str, a: list[Any], b: list[Any], lines: list[str]) -> None:
    old, new = {r[key]: r for r in a}, {r[key]: r for r in b}
    lines.extend(f"{kind} {name} removed" for name in old.keys() - new.keys())
    lines.extend(f"{kind} {name} added" for name in new.keys() - old.keys())
    for name in old.keys() & new.keys():
        for field_name in old[name].keys() | new[name].keys():
            if field_name != key:
                label = f"{kind} {name} {field_name}"
                _settings(label, old[name].get(field_name), new[name].get(field_name), lines)


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    return repr(value) if not isinstance(value, bool) else str(value).lower()


# -------------------------------------------------------------------- for a person

MARKS = {"added": "+", "removed": "-", "modified": "~"}


def render(shops: list[dict[str, Any]], *, applied: bool) -> str:
    """Plans in their JSON form (`ShopPlan.as_json`) as a person reads them, one block per
    shop and a count, like `terraform plan`."""
    if not shops:
        return "No changes: the shop files on disk are what runs.\n"
    out: list[str] = []
    for plan in shops:
        out.append(f"{MARKS[plan['change']]} shop {plan['shop']} ({plan['change']})")
        out.extend(f"    {line}" for line in plan["changes"])
        if plan["change"] == "modified":
            e = plan["effects"]
            out.append(
                f"    => at once: {e['assigned']} assigned from a line, {e['queued']} queued, "
                f"{e['moved']} moved to another line, {e['expired']} expired, "
                f"{e['above_cap']} sessions above cap"
            )
    count = {change: sum(p["change"] == change for p in shops) for change in MARKS}
    verb = "Applied" if applied else "Dry run, nothing applied"
    out.append(
        f"{verb}: {count['added']} added, {count['modified']} modified, {count['removed']} removed."
    )
    return "\n".join(out) + "\n"
