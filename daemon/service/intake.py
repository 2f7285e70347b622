"""From a polled batch to engine calls, dead letters and outbox records (contract §1 and 8).

`Intake.apply` feeds the records of the owned partitions to the engine partition by
partition, the three input topics merged by `ts` (daemon.service.kafka.ordered_batch), and
`fire_timers` fires the due timers. Every record is noted as consumed in the batch being
checkpointed (daemon.service.checkpoint) — or skipped, if the restored state already reflects
it. A record that does not decode, one found on another partition than its shop's
(misrouted) and one the engine refuses become dead letters; a record of a shop set aside is
held, to be read again when the shop is readmitted. Every output goes to the outbox of its
shop, or of its input partition, and to the shop's last decisions (daemon.service.views).
A shop whose engine fails is quarantined; the others go on. Once a batch is checkpointed,
`log_stops` logs the experiment arms a guardrail stopped in it (record_log.ArmStops).

Every output is sized before it enters an outbox: its key and value together must fit
`max_output_bytes` (daemon.service.clients.MAX_OUTPUT_BYTES, the producer's request limit
less headroom for the record's own headers), or Kafka would refuse it and, sent again by
every restore, it would stop the service. One that does not fit is not put in the outbox:
it is logged (`output_oversized`) and counted (`fenliu_outputs_undelivered_total{type,
cause="oversized"}`), and a routing output's shop is set aside (quarantined) with the cause
— routing outputs are small by the contract's field limits, so this is a bug to fix, and the
shop's records are held meanwhile. A dead letter that does not fit (it cannot at the
production limit: dead letters stay under 64 KiB, topics.excerpt) is dropped; the record it
describes stays in its source topic.
"""

from __future__ import annotations

import time
from typing import Any

from aiokafka.structs import ConsumerRecord, TopicPartition

from daemon.core.engine import Engine, EventRejected
from daemon.service.checkpoint import Checkpoint
from daemon.service.checkpoint_types import Batch
from daemon.service.clients import MAX_OUTPUT_BYTES
from daemon.service.kafka import Decoded, TopicMap, ordered_batch
from daemon.service.metrics import Metrics, RejectReason
from daemon.service.record_log import ArmStops, Rejections, dead_letter, log_decision
from daemon.service.restore import RELEASE_HINT
from daemon.service.store import OutboxRecord
from daemon.service.views import Decisions
from topics.codec import DecodeError, decode, encode, type_name
from topics.events import InputEvent, OutputEvent, Rejected

Polled = dict[TopicPartition, list[ConsumerRecord[Any, Any]]]


class Intake:
    """Turns records and timers into the engine's outputs, in the batch being checkpointed.
    `positions` is where each input partition will be read next (the lag metric reads it);
    `received` and `rejected` count records; `max_output_bytes` bounds an output record."""

    def __init__(
        self,
        engine: Engine,
        checkpoint: Checkpoint,
        topics: TopicMap,
        metrics: Metrics,
        log: Any,
        decisions: Decisions,
        *,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
    ) -> None:
        self._engine = engine
        self.max_output_bytes = max_output_bytes
        self._decisions = decisions
        self._checkpoint = checkpoint
        self._topics = topics
        self._metrics = metrics
        self._log = log
        self.positions: dict[TopicPartition, int] = {}
        self.received = 0
        self.rejected = 0
        self._misrouted_logged: set[tuple[str, str, int]] = set()
        self._rejections = Rejections(log)  # `event_rejected`: once per pattern per 10 s
        self._stops = ArmStops(log)  # `experiment_arm_stopped`

    def apply(self, work: Batch, batch: Polled, now: int) -> None:
        """Feed the records of `batch` (owned partitions only) to the engine."""
        engine, checkpoint = self._engine, self._checkpoint
        for _, items in ordered_batch(batch, list(self._topics.inputs), self._decode):
            for item in items:
                record = item.record
                topic, part, offset = record.topic, record.partition, record.offset
                self.positions[TopicPartition(topic, part)] = offset + 1
                event = item.event
                shop_id = event.shop_id if event is not None else _key_text(record.key)
                home = configured = None  # the shop if configured; and if on its partition
                if shop_id is not None and shop_id in engine.shops:
                    configured = shop_id
                    home = shop_id if checkpoint.held.home(shop_id) == part else None
                if checkpoint.seen_before(home, topic, part, offset):
                    checkpoint.consumed(work, None, topic, part, offset)
                    continue  # already in the restored state, or rejected before
                checkpoint.consumed(work, home, topic, part, offset)
                self.received += 1
                if event is None:
                    assert item.error is not None
                    self.add_output(work, self._reject(record, item.error, now, "invalid"), part)
                elif configured is not None and home is None:
                    self.add_output(work, self._misrouted(record, event.shop_id, now), part)
                elif home is None or checkpoint.held.aside(home) is None:  # else held: read again
                    self._handle(work, record, event, part, now)

    def fire_timers(self, work: Batch, now: int) -> None:
        """Fire the due timers of every shop; a shop whose engine fails is quarantined."""
        engine = self._engine
        for shop_id in engine.due(now):
            try:
                outputs = engine.fire(shop_id, now)
            except Exception as exc:  # noqa: BLE001 - the shop's supervisor: quarantine it
                self._quarantine(work, shop_id, exc)
                continue
            for event in outputs:
                self.add_output(work, event, None)

    def log_stops(self) -> None:
        """Log the experiment arms a guardrail stopped since the last call (after the
        checkpoint that holds them), in the shops served here (owned, not set aside)."""
        held = self._checkpoint.held

        def served(shop_id: str) -> bool:
            owned = held.holding(shop_id)
            return owned is not None and shop_id not in owned.set_aside

        self._stops.log_new(self._engine, served)

    def add_output(self, work: Batch, event: OutputEvent, part: int | None) -> None:
        """Put an output in the outbox of its shop, or of its input partition `part`, if it
        fits (see the module docstring). A decision of a shop set aside earlier in the batch
        is dropped with the rest of its batch: its records are held and read again."""
        checkpoint = self._checkpoint
        owner = checkpoint.owner_of(event.shop_id, part)
        aside = isinstance(owner, str) and checkpoint.held.aside(owner) is not None
        if aside and not isinstance(event, Rejected):
            return
        key = event.shop_id.encode() if event.shop_id is not None else None
        record = OutboxRecord(self._topics.output_topic(event), key, encode(event))
        size = len(record.value) + len(key or b"")
        if size > self.max_output_bytes:
            self._oversized(work, event, size, owner)
            return
        checkpoint.output(work, owner, record)
        self._metrics.decided([event])
        self._decisions.add(event)
        log_decision(self._log, event)

    def _handle(
        self, work: Batch, record: ConsumerRecord[Any, Any], event: InputEvent, part: int, now: int
    ) -> None:
        """Feed one event to the engine; a shop whose engine fails is quarantined."""
        engine = self._engine
        self._metrics.events_in.labels(record.topic, type_name(event)).inc()
        started = time.perf_counter()
        try:
            outputs = engine.handle(event, now)
        except EventRejected as rejected:
            outputs = rejected.outputs
            kind: RejectReason = "refused" if event.shop_id in engine.shops else "unknown_shop"
            outputs.append(self._reject(record, rejected.reason, now, kind))
        except Exception as exc:  # noqa: BLE001 - the shop's supervisor: quarantine it
            self._quarantine(work, event.shop_id, exc)
            return
        self._metrics.decision_seconds.observe(time.perf_counter() - started)
        for output in outputs:
            self.add_output(work, output, part)

    def _quarantine(self, work: Batch, shop_id: str, exc: BaseException) -> None:
        """Set a shop aside after its engine failed (daemon.service.checkpoint): the others go
        on."""
        cause = f"engine failed: {type(exc).__name__}: {exc}"
        self._checkpoint.put_aside(shop_id, cause, work)
        self._decisions.forget([shop_id])
        self._log.error(
            "shop_quarantined", shop_id=shop_id, cause=cause, release=RELEASE_HINT,
            exc_info=exc,
        )  # fmt: skip

    def _oversized(self, work: Batch, event: OutputEvent, size: int, owner: int | str) -> None:
        """An output too large to send: not in the outbox; its shop set aside unless it is a
        dead letter."""
        kind = type_name(event)
        self._metrics.undelivered.labels(kind, "oversized").inc()
        self._log.error(
            "output_oversized", type=kind, id=event.id, shop_id=event.shop_id, bytes=size,
            limit=self.max_output_bytes,
        )  # fmt: skip
        if isinstance(event, Rejected) or not isinstance(owner, str):
            return
        cause = f"output {event.id} is {size} bytes, over the {self.max_output_bytes}-byte limit"
        self._checkpoint.put_aside(owner, cause, work)
        self._decisions.forget([owner])
        self._log.error("shop_quarantined", shop_id=owner, cause=cause, release=RELEASE_HINT)

    def _misrouted(self, record: ConsumerRecord[Any, Any], shop_id: str, now: int) -> OutputEvent:
        """The dead letter of a record on another partition than its shop's (contract §1);
        logged once per topic, shop and partition found, counted every time."""
        home = self._checkpoint.held.home(shop_id)
        reason = (
            f"shop {shop_id!r} belongs on partition {home} of {record.topic}, found on "
            f"{record.partition}: the producer is not using the murmur2 partitioner "
            "(librdkafka: partitioner=murmur2_random)"
        )
        self._metrics.misrouted.labels(record.topic).inc()
        pattern = (record.topic, shop_id, record.partition)
        if pattern not in self._misrouted_logged:
            self._misrouted_logged.add(pattern)
            self._log.error(
                "records_misrouted", shop_id=shop_id, topic=record.topic,
                partition=record.partition, belongs_on=home, reason=reason,
            )  # fmt: skip
        return self._reject(record, reason, now, "misrouted", logged=False)

    def _reject(
        self,
        record: ConsumerRecord[Any, Any],
        reason: str,
        now: int,
        kind: RejectReason,
        *,
        logged: bool = True,
    ) -> OutputEvent:
        self.rejected += 1
        self._metrics.rejects.labels(kind).inc()
        letter = dead_letter(record, reason, kind, now, self._rejections if logged else None)
        if isinstance(letter, Rejected) and (letter.raw_truncated or letter.key_truncated):
            self._metrics.rejects_cut.inc()  # the dead letter says so too (raw_truncated)
        return letter

    def _decode(self, record: ConsumerRecord[Any, Any]) -> Decoded:
        try:
            event = decode(record.value, record.key, self._topics.inputs[record.topic])
        except DecodeError as exc:
            return Decoded(record, None, str(exc))
        return Decoded(record, event, None)


def _key_text(key: bytes | None) -> str | None:
    """A record key as a shop id, if it decodes."""
    if key is None:
        return None
    try:
        return key.decode()
    except UnicodeDecodeError:
        return None
