"""The limits that keep outputs deliverable (contract §6, daemon.service.clients/delivery).

Pins: an output of MAX_OUTPUT_BYTES (key and value) is within the producer's request limit
by aiokafka's own estimate, so what the intake lets into an outbox is never refused by the
producer's size check; and only refusals of the record or its topic count as refused for
good: timeouts, lost connections and unknown server errors keep the recover-with-backoff
path (aiokafka marks some of those not retriable, so `retriable` alone would not do).
"""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    InvalidTopicError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordListTooLargeError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
    UnknownError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from daemon.service.clients import MAX_OUTPUT_BYTES, MAX_REQUEST_BYTES
from daemon.service.delivery import refused_for_good


@pytest.mark.parametrize("key_bytes", [0, 128, 1_024])
def test_an_output_at_the_limit_fits_the_producers_request(key_bytes: int) -> None:
    key = b"k" * key_bytes or None
    value = b"v" * (MAX_OUTPUT_BYTES - key_bytes)
    assert DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, []) <= MAX_REQUEST_BYTES


@pytest.mark.parametrize(
    ("exc", "for_good"),
    [
        (MessageSizeTooLargeError(), True),
        (RecordListTooLargeError(), True),
        (InvalidTopicError(), True),
        (TopicAuthorizationFailedError("t"), True),
        (KafkaTimeoutError(), False),
        (KafkaConnectionError(), False),
        (RequestTimedOutError(), False),
        (NotLeaderForPartitionError(), False),
        (UnknownError(), False),
        (KafkaError(), False),
        (OSError(), False),
    ],
)
def test_only_refusals_of_the_record_or_its_topic_are_for_good(
    exc: BaseException, for_good: bool
) -> None:
    assert refused_for_good(exc) is for_good
