"""What the service logs per record: a refused input record, each decision, and each arm of
a grey test that a guardrail stopped.

A refused record becomes a dead-letter record (and is counted, by the caller) every time,
but its `event_rejected` warning is bounded (contract §6): `Rejections` writes one line per
pattern — input topic and reason kind — per QUIET_S, naming the first record of it (topic,
partition, offset, shop_id, reason); the records of that pattern refused meanwhile are held
back and counted, and the next line written for it says how many (`repeated`). Nothing is
flushed at the end: what was held back after the last line is in the dead letters and in
`fenliu_rejected_total`. Each decision is one debug line — `assignment`, `session_closed`,
`queue_update` — with shop_id, buyer_id and agent_id (docs/daemon.md).

An arm a guardrail stopped (contract §3.7) is one `experiment_arm_stopped` warning
(`ArmStops`), written once the checkpoint that holds the stop is in Redis. A checkpoint that
fails sends the service back to what Redis holds, so a stop decided again after it is
logged again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiokafka.structs import ConsumerRecord

from daemon.service.logs import Repeats
from topics.codec import rejected_for
from topics.events import Assignment, OutputEvent, QueueUpdate, RejectKind, SessionClosed

if TYPE_CHECKING:
    from daemon.core.config import ShopConfig
    from daemon.core.engine import Engine

QUIET_S = 10.0  # one `event_rejected` line per topic and reason kind this often, at most


class Rejections:
    """`event_rejected` warnings, one per (topic, reason kind) per `quiet_s`; the rest
    counted and reported as `repeated` on the pattern's next line."""

    def __init__(
        self, log: Any, quiet_s: float = QUIET_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.log = log
        self._repeats = Repeats(quiet_s, clock)

    def rejected(
        self, record: ConsumerRecord[Any, Any], reason: str, kind: RejectKind, shop_id: str | None
    ) -> None:
        """Log a refused record, unless its pattern was logged less than `quiet_s` ago."""
        held = self._repeats.admit((record.topic, kind))
        if held is None:
            return
        self.log.warning(
            "event_rejected", kind=kind, reason=reason, topic=record.topic,
            partition=record.partition, offset=record.offset, shop_id=shop_id,
            **({"repeated": held} if held else {}),
        )  # fmt: skip


def dead_letter(
    record: ConsumerRecord[Any, Any],
    reason: str,
    kind: RejectKind,
    now: int,
    log: Rejections | None,
) -> OutputEvent:
    """The dead-letter record for a refused input record (`reason` the sentence, `kind` the
    reason's kind), logged as `event_rejected` through `log` (unless it is None: the caller
    logs the pattern once instead)."""
    rejected = rejected_for(
        reason,
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        value=record.value,
        key=record.key,
        now_ms=now,
        kind=kind,
    )
    if log is None:
        return rejected
    log.rejected(record, reason, kind, rejected.shop_id)
    return rejected


def log_decision(log: Any, event: OutputEvent) -> None:
    """One debug line per decision (assignments, closed sessions, queue updates)."""
    if isinstance(event, Assignment):
        log.debug(
            "assignment", shop_id=event.shop_id, buyer_id=event.buyer_id, agent_id=event.agent_id,
            reason=event.reason.value, group=event.group,
        )  # fmt: skip
    elif isinstance(event, SessionClosed):
        log.debug(
            "session_closed", shop_id=event.shop_id, buyer_id=event.buyer_id,
            agent_id=event.agent_id, reason=event.reason.value,
        )  # fmt: skip
    elif isinstance(event, QueueUpdate):
        log.debug(
            "queue_update", shop_id=event.shop_id, buyer_id=event.buyer_id,
            status=event.status.value, position=event.position,
        )  # fmt: skip


class ArmStops:
    """`experiment_arm_stopped` warnings: one per arm a guardrail stopped, with shop_id,
    experiment, arm, its policy, guardrail and the reason sentence (cut like every logged
    string, daemon.service.logs). Only the shops whose file runs an experiment are looked
    at: their list is made again when a reload replaced the engine's configurations (a new
    `Engine.configs`), so a batch costs nothing more for the shops that run none."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self._configs: Mapping[str, ShopConfig] | None = None
        self._testing: tuple[str, ...] = ()  # the shops whose file has an [experiment]

    def log_new(self, engine: Engine, served: Callable[[str], bool]) -> int:
        """Log the arms stopped since the last call in the shops `served` (a shop set
        aside starts again from Redis: its stops are dropped); how many were logged."""
        if engine.configs is not self._configs:
            self._configs = configs = engine.configs
            self._testing = tuple(s for s, c in configs.items() if c.experiment is not None)
        logged = 0
        for shop_id in self._testing:
            shop = engine.shops.get(shop_id)
            exp = None if shop is None else shop.state.experiments.running
            if exp is None or not exp.news:
                continue
            arms = exp.take_news()
            if not served(shop_id):
                continue
            for arm in arms:
                stop = exp.stopped[arm]
                self.log.warning(
                    "experiment_arm_stopped", shop_id=shop_id, experiment=exp.name, arm=arm,
                    policy=exp.config.arms[arm], guardrail=stop.guardrail, reason=stop.why,
                    at=stop.at,
                )  # fmt: skip
                logged += 1
        return logged
