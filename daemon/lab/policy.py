"""A routing policy to simulate: a name plus the group modes it imposes on a shop file.

    as-configured                 the modes the shop file sets (the default)
    efficiency | average | weighted
    conversion                    conversion mode, each group keeping its strength
    conversion:high               conversion mode with that strength (low | mid | high)
    presale=conversion:high       one group only; the rest as configured
    average,presale=conversion:high
                                  clauses separated by commas: a shop-wide one (at most one)
                                  and any number of per-group ones, applied in that order
    oracle                        the reference, not a mode a shop can set: conversion mode
                                  in every group, ranking by the agents' TRUE conversion
                                  rates (daemon/lab/world.py)

A shop-wide clause sets the shop's `mode` and every group's `mode` (and, with a strength,
every group's `conversion_strength`). The pool of several `accept_unmatched` groups is
routed by the shop's `mode` with strength `mid` whatever the groups say (the routing core's
rule), so a strength reaches unmatched buyers only through a group of their own.

The oracle obeys every rule conversion mode obeys — caps, busyness first (contract §3.4),
`conversion_min_agents` (with that many or fewer eligible agents the group uses
efficiency) — and, wherever conversion mode would choose, picks the non-busy (else busy)
eligible agent with the highest true rate (ties: the lower load / weight, then as
efficiency). It cannot be built from conversion mode with true rates sent as `agent_stats`:
conversion mode trades rate against load, weight and level by design, so no strength orders
strictly by rate. Nor can the lab reach into the compiled core. The runner therefore builds
the engine with `Engine(oracle={shop: true rates})`, a constructor argument the daemon never
passes (no configuration or event reaches it), and the candidates rank by those rates in
conversion mode (daemon/core/candidate.py). Everything else — matching, sticky, repeat
entry, queues — is the same engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from daemon.core.config import GroupConfig, ShopConfig, Strength
from topics.events import Mode

AS_CONFIGURED = "as-configured"
ORACLE = "oracle"
_STRENGTHS = ("low", "mid", "high")
_MODES = ", ".join(m.value for m in Mode)


@dataclass(frozen=True, slots=True)
class ModeChoice:
    """A mode and, for conversion, an optional strength (None keeps the file's)."""

    mode: Mode
    strength: Strength | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """A name and the mode overrides it applies to a shop (see the module docstring)."""

    name: str = AS_CONFIGURED
    shop: ModeChoice | None = None  # shop-wide override
    groups: tuple[tuple[str, ModeChoice], ...] = ()  # per-group overrides, in order
    oracle: bool = False  # rank conversion mode by the true rates (module docstring)

    def apply(self, config: ShopConfig) -> ShopConfig:
        """The shop with this policy's modes (ValueError naming an unknown group)."""
        names = [g.name for g in config.groups]
        for group_name, _ in self.groups:
            if group_name not in names:
                raise ValueError(
                    f"policy {self.name!r}: shop {config.id!r} has no group {group_name!r} "
                    f"(its groups: {', '.join(names)})"
                )
        groups = list(config.groups)
        shop_update: dict[str, object] = {}
        if self.shop is not None:
            shop_update["mode"] = self.shop.mode
            groups = [_with(g, self.shop) for g in groups]
        for group_name, choice in self.groups:
            groups = [_with(g, choice) if g.name == group_name else g for g in groups]
        if not shop_update and not self.groups:
            return config
        shop_update["groups"] = tuple(groups)
        return config.model_copy(update=shop_update)

    def conversion_groups(self, config: ShopConfig) -> list[str]:
        """The groups this policy routes by conversion mode (their own mode or the shop's)."""
        shop = self.apply(config)
        return [g.name for g in shop.groups if (g.mode or shop.mode) is Mode.CONVERSION]


def _with(group: GroupConfig, choice: ModeChoice) -> GroupConfig:
    update: dict[str, object] = {"mode": choice.mode}
    if choice.strength is not None:
        update["conversion_strength"] = choice.strength
    return group.model_copy(update=update)


def parse_policy(text: str) -> Policy:
    """A policy from its text (module docstring); ValueError saying what is wrong."""
    name = text.strip()
    if not name:
        raise ValueError("a policy cannot be empty: use a mode such as 'efficiency'")
    if name == AS_CONFIGURED:
        return Policy()
    if name == ORACLE:
        return Policy(ORACLE, ModeChoice(Mode.CONVERSION), oracle=True)
    shop: ModeChoice | None = None
    groups: list[tuple[str, ModeChoice]] = []
    for raw in name.split(","):
        clause = raw.strip()
        group, sep, spec = clause.partition("=")
        if sep:
            group = group.strip()
            if not group:
                raise ValueError(f"policy {name!r}: {clause!r} names no group before '='")
            groups.append((group, _choice(name, spec.strip())))
        elif shop is not None:
            raise ValueError(f"policy {name!r}: more than one shop-wide mode")
        else:
            shop = _choice(name, clause)
    return Policy(name, shop, tuple(groups))


def _choice(policy: str, spec: str) -> ModeChoice:
    mode_text, sep, strength = spec.partition(":")
    try:
        mode = Mode(mode_text.strip())
    except ValueError:
        raise ValueError(
            f"policy {policy!r}: {mode_text.strip()!r} is not a mode (use one of {_MODES}, "
            "optionally 'conversion:low|mid|high', or 'GROUP=MODE'; or 'oracle' alone)"
        ) from None
    if not sep:
        return ModeChoice(mode)
    strength = strength.strip()
    if mode is not Mode.CONVERSION:
        raise ValueError(f"policy {policy!r}: a strength applies only to conversion mode")
    if strength not in _STRENGTHS:
        raise ValueError(
            f"policy {policy!r}: {strength!r} is not a conversion strength (low, mid or high)"
        )
    return ModeChoice(mode, cast("Strength", strength))
