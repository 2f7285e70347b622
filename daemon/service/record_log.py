"""What the service logs per record: a refused input record and each decision.

A refused record becomes a dead-letter record and one `event_rejected` warning (topic,
partition, offset, shop_id); each decision is one debug line — `assignment`,
`session_closed`, `queue_update` — with shop_id, buyer_id and agent_id (docs/daemon.md).
"""

from __future__ import annotations

from typing import Any

from aiokafka.structs import ConsumerRecord

from topics.codec import rejected_for
from topics.events import Assignment, OutputEvent, QueueUpdate, RejectKind, SessionClosed


def dead_letter(
    record: ConsumerRecord[Any, Any], reason: str, kind: RejectKind, now: int, log: Any | None
) -> OutputEvent:
    """The dead-letter record for a refused input record (`reason` the sentence, `kind` the
    reason's kind), logged as `event_rejected` (unless `log` is None: the caller logs the
    pattern once instead)."""
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
    log.warning(
        "event_rejected",
        reason=reason,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        shop_id=rejected.shop_id,
    )
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
