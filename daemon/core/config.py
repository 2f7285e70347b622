"""Typed, validated, frozen shop configuration (docs/contract.md §5).

These models are what the routing engine consumes. Reading TOML files and turning
validation errors into "file: key: problem" lines is `daemon.config`'s job; this module only
says what a valid shop is. Durations are stored as integer milliseconds; on input they are
an integer number of seconds or a string such as ``"90s"``, ``"10m"``, ``"72h"``, ``"1d"``
or ``"1h30m"``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from daemon.core.grey_stats import parse_guardrails
from topics.events import Mode

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_NOT_A_DURATION = "a duration is an integer number of seconds or a string like '10m'"


def parse_duration_ms(value: object) -> int:
    """Turn a contract duration (seconds as an integer, or ``"10m"``-style text) into ms."""
    # ValueError throughout, not TypeError: pydantic reports only ValueError as bad input.
    if isinstance(value, bool):
        raise ValueError(_NOT_A_DURATION)  # noqa: TRY004
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return value * 1000
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if text.isdigit():
            return int(text) * 1000
        pos, total = 0, 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNIT_MS[match.group(2)]
            pos = match.end()
        if text and pos == len(text):
            return round(total)
        raise ValueError(
            f"{value!r} is not a duration: use seconds as an integer or a string such as "
            "'90s', '10m', '72h', '1d' or '1h30m'"
        )
    raise ValueError(_NOT_A_DURATION)


def format_duration_ms(ms: int) -> str:
    """A duration as `parse_duration_ms` reads it back, in whole units: 90_000 is "1m30s"."""
    parts = []
    for unit in ("d", "h", "m", "s", "ms"):
        count, ms = divmod(ms, _UNIT_MS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _longer_than_zero(value: int) -> int:
    if value <= 0:
        raise ValueError("must be longer than 0s")
    return value


DurationMs = Annotated[int, BeforeValidator(parse_duration_ms)]
# A duration that must be longer than 0s; a problem is reported under its own key, e.g.
# `queue.session_timeout`, rather than under `queue`.
PositiveMs = Annotated[DurationMs, AfterValidator(_longer_than_zero)]
Name = Annotated[str, Field(min_length=1, max_length=128)]
Strength = Literal["low", "mid", "high"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class QueueConfig(_Frozen):
    """`[queue]`: queueing mode (排队模式) and session timing."""

    enabled: bool = False
    scope: Literal["shop", "groups"] = "shop"
    groups: tuple[Name, ...] = ()
    default_cap: int = Field(default=5, ge=1)
    session_timeout: PositiveMs = 600_000
    repeat_entry_window: DurationMs = 1_800_000
    avg_handle_time: PositiveMs = 300_000
    max_wait: DurationMs = 0
    update_interval: DurationMs = 10_000
    priority_aging: DurationMs = 0  # 0: off; else a buyer's priority + 1 per this long waited

    # A field validator (not a model validator), so that a problem is reported under its
    # own key, e.g. `queue.update_interval`, rather than under `queue`.
    @field_validator("update_interval")
    @classmethod
    def _at_least_one_second(cls, value: int) -> int:
        if value < 1000:
            raise ValueError("must be at least 1s")
        return value


class RepliesConfig(_Frozen):
    """`[replies]`: reply clocks (回复时效, contract §3.6)."""

    deadline: PositiveMs = 180_000  # a later reply is late; a buyer waiting longer is overdue
    warn_after: PositiveMs = 100_000  # from then on a waiting buyer is shown as waiting too long
    reassign_after: DurationMs = 0  # 0: off; else a first message unanswered this long moves
    overdue_is_busy: bool = True  # an agent with an overdue buyer is busy (contract §3.4)


class AgentConfig(_Frozen):
    """`[[agents]]`: one customer-service sub-account (客服子账号)."""

    id: Name
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    level: int = Field(default=3, ge=1, le=5)
    cap: int | None = Field(default=None, ge=1)


class MatchConfig(_Frozen):
    """`[groups.match]`: the values a group binds, per dimension."""

    crowd: tuple[str, ...] = ()
    items: tuple[str, ...] = ()
    intents: tuple[str, ...] = ()
    order_status: tuple[str, ...] = ()


class GroupConfig(_Frozen):
    """`[[groups]]`: a 分流 group of agents."""

    name: Name
    agents: tuple[Name, ...] = Field(min_length=1)  # an empty group would queue forever
    mode: Mode | None = None
    conversion_strength: Strength = "mid"
    cap: int | None = Field(default=None, ge=1)
    accept_unmatched: bool = True
    overflow_to: Name | None = None
    match: MatchConfig = MatchConfig()


_POLICY = re.compile(r"(average|weighted|efficiency|conversion)(?::(low|mid|high))?")
MAX_ARMS = 8


def parse_policy(text: str) -> tuple[Mode, Strength | None]:
    """An experiment arm's policy (contract §3.7): a mode as in a group's `mode`, with
    `:low|mid|high` for conversion (without it, each group's own strength)."""
    match = _POLICY.fullmatch(text)
    if match is None or (match.group(2) and match.group(1) != "conversion"):
        raise ValueError(
            f"{text!r} is not a policy: use average, weighted, efficiency, conversion, "
            "or conversion:low, conversion:mid, conversion:high"
        )
    strength: Strength | None = match.group(2)  # type: ignore[assignment]
    return Mode(match.group(1)), strength


class ExperimentConfig(_Frozen):
    """`[experiment]`: a grey test (灰度测试, contract §3.7), arms by a hash of the buyer."""

    name: Name
    arms: dict[Name, str]  # arm -> policy
    split: dict[Name, int]  # arm -> percent of buyers
    guardrails: dict[str, str] = Field(default_factory=dict)

    @field_validator("arms")
    @classmethod
    def _policies(cls, arms: dict[str, str]) -> dict[str, str]:
        if "control" not in arms:
            raise ValueError("needs an arm named 'control': the others are compared with it")
        if len(arms) < 2 or len(arms) > MAX_ARMS:
            raise ValueError(f"needs 'control' and 1 to {MAX_ARMS - 1} other arms")
        for policy in arms.values():
            parse_policy(policy)
        return arms

    @field_validator("split")
    @classmethod
    def _percent(cls, split: dict[str, int]) -> dict[str, int]:
        if any(share < 1 or share > 100 for share in split.values()):
            raise ValueError("every arm's share is a whole percent from 1 to 100")
        if sum(split.values()) != 100:
            raise ValueError(f"the shares add up to {sum(split.values())}, not 100")
        return split

    @field_validator("guardrails")
    @classmethod
    def _limits(cls, guardrails: dict[str, str]) -> dict[str, str]:
        parse_guardrails(guardrails)
        return guardrails


class ShopConfig(_Frozen):
    """One shop file: agents, groups, modes, queueing, reply clocks and a grey test."""

    id: Name
    mode: Mode = Mode.EFFICIENCY
    busy_threshold: int = Field(default=4, ge=0)
    sticky_window: DurationMs = 72 * 3_600_000
    conversion_window: DurationMs = 24 * 3_600_000
    conversion_min_agents: int = Field(default=5, ge=0)
    queue: QueueConfig = QueueConfig()
    replies: RepliesConfig = RepliesConfig()
    agents: tuple[AgentConfig, ...] = Field(min_length=1)
    groups: tuple[GroupConfig, ...] = Field(min_length=1)
    experiment: ExperimentConfig | None = None

    @model_validator(mode="after")
    def _references_hold(self, info: ValidationInfo) -> ShopConfig:
        # A loader that reports each problem under its own key validates with
        # context={"defer_references": True} and calls shop_reference_problems itself.
        if isinstance(info.context, dict) and info.context.get("defer_references"):
            return self
        problems = shop_reference_problems(self)
        if problems:
            raise ValueError("; ".join(f"{key}: {text}" for key, text in problems))
        return self

    @property
    def version(self) -> str:
        """A short hash of the shop's settings that differ from their defaults: the same
        file, or one that differs only in layout, comments or settings written out at their
        defaults, gives the same version, and a setting a later Fenliu brings changes no
        version until it is set; every output carries it (contract §1.3). Computed on each
        call, never cached: `model_copy` would copy a cached value into a changed copy."""
        settings = self.model_dump(mode="json", exclude_defaults=True)
        return hashlib.sha256(orjson.dumps(settings, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]

    def agent(self, agent_id: str) -> AgentConfig | None:
        """The agent's configuration, or None when the shop does not configure it."""
        for agent in self.agents:
            if agent.id == agent_id:
                return agent
        return None


def shop_reference_problems(shop: ShopConfig) -> list[tuple[str, str]]:
    """Cross-references that a single field cannot check, as (key, problem) pairs."""
    problems: list[tuple[str, str]] = []
    agent_ids = [a.id for a in shop.agents]
    group_names = [g.name for g in shop.groups]
    for i, agent_id in enumerate(agent_ids):
        if agent_id in agent_ids[:i]:
            problems.append((f"agents[{i}].id", f"agent {agent_id!r} is configured twice"))
    for i, group in enumerate(shop.groups):
        if group.name in group_names[:i]:
            problems.append((f"groups[{i}].name", f"group {group.name!r} is defined twice"))
        for j, agent_id in enumerate(group.agents):
            key = f"groups[{i}].agents[{j}]"
            if agent_id not in agent_ids:
                problems.append((key, f"agent {agent_id!r} is not configured in [[agents]]"))
            elif agent_id in group.agents[:j]:
                problems.append((key, f"agent {agent_id!r} is listed twice in this group"))
        if group.overflow_to is not None and group.overflow_to not in group_names:
            problems.append(
                (f"groups[{i}].overflow_to", f"no group is named {group.overflow_to!r}")
            )
    for j, name in enumerate(shop.queue.groups):
        if name not in group_names:
            problems.append((f"queue.groups[{j}]", f"no group is named {name!r}"))
    problems.extend(_scope_problems(shop.queue))
    problems.extend(_overflow_cycles(shop))
    if shop.experiment is not None and set(shop.experiment.split) != set(shop.experiment.arms):
        problems.append(
            (
                "experiment.split",
                f"names arms {sorted(shop.experiment.split)}; the arms are "
                f"{sorted(shop.experiment.arms)}: give every arm a share, and only arms",
            )
        )
    return problems


def _scope_problems(queue: QueueConfig) -> list[tuple[str, str]]:
    # `queue.groups` is read only with scope "groups"; the default scope is "shop", so a
    # list without the scope would silently queue every group instead of the listed ones.
    if queue.scope == "groups" and not queue.groups:
        return [("queue.groups", 'scope = "groups" needs the names of the groups that queue')]
    if queue.scope == "shop" and queue.groups:
        return [
            (
                "queue.groups",
                'is only used with scope = "groups" (scope "shop" queues every group): '
                'set queue.scope = "groups" or remove queue.groups',
            )
        ]
    return []


def _overflow_cycles(shop: ShopConfig) -> list[tuple[str, str]]:
    nxt = {g.name: g.overflow_to for g in shop.groups}
    for i, group in enumerate(shop.groups):
        seen = {group.name}
        cur = group.overflow_to
        while cur is not None and cur in nxt:
            if cur in seen:
                return [
                    (
                        f"groups[{i}].overflow_to",
                        f"overflow from {group.name!r} loops back to {cur!r}",
                    )
                ]
            seen.add(cur)
            cur = nxt[cur]
    return []
