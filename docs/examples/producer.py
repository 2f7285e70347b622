"""A minimal Fenliu front end with confluent-kafka (librdkafka): docs/producers.md explains it.

It puts an agent online, sends one buyer's inquiry, then reads Fenliu's outputs until that
buyer's assignment arrives (printing the buyer's queue updates on the way, and any of its
records Fenliu refused). Run it against `fenliu dev`, which prints the broker's address
(`broker  127.0.0.1:PORT`):

    pip install 'confluent-kafka>=2.6,<3'
    python docs/examples/producer.py --bootstrap 127.0.0.1:PORT

Defaults fit `fenliu dev` (shop "big", agent "gen-01", topics "fenliu.*"); every setting is
an option or an environment variable (FENLIU_BOOTSTRAP, FENLIU_SHOP, FENLIU_AGENT,
FENLIU_TOPIC_PREFIX). Exit code 0: assigned; 1: no assignment in time; 2: a record refused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer


def producer_config(bootstrap: str) -> dict[str, Any]:
    """What every Fenliu producer on librdkafka needs."""
    return {
        "bootstrap.servers": bootstrap,
        # A shop's records must land on partition murmur2(shop_id) mod partitions, as the
        # Java client would put them: librdkafka's default (consistent_random, CRC32) does not.
        "partitioner": "murmur2_random",
        "acks": "all",
        # Retries re-send the same bytes, so the same event id: Fenliu drops the duplicate.
        # Idempotence would also keep a retried batch in order; the Tansu broker of
        # `fenliu dev` does not support idempotent producers, so it is off here. Against a
        # real Kafka cluster, set it to True.
        "enable.idempotence": False,
        "linger.ms": 5,
    }


def event(kind: str, shop: str, **fields: Any) -> tuple[bytes, bytes]:
    """One input record: (key, value). The key is the shop id, equal to `shop_id`; the id is
    made once, so a retry of this record carries the same id."""
    body = {
        "type": kind,
        "id": f"{kind}-{uuid.uuid4()}",
        "shop_id": shop,
        "ts": int(time.time() * 1000),
        **fields,
    }
    return shop.encode(), json.dumps(body).encode()


def produce(args: argparse.Namespace) -> set[str]:
    """Put the agent online, then send the buyer's inquiry; the ids sent."""
    producer = Producer(producer_config(args.bootstrap))
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:  # librdkafka has given up retrying this record
            failures.append(error)

    sent = set()
    records = [
        (f"{args.topic_prefix}.agent-status", event(
            "agent_status", args.shop, agent_id=args.agent, status="online"
        )),
        (f"{args.topic_prefix}.inquiries", event("inquiry", args.shop, buyer_id=args.buyer)),
    ]  # fmt: skip
    for topic, (key, value) in records:
        producer.produce(topic, value=value, key=key, on_delivery=delivered)
        sent.add(json.loads(value)["id"])
    if producer.flush(30) or failures:
        raise SystemExit(f"not delivered: {failures or 'flush timed out'}")
    print(f"sent agent_status and inquiry for buyer {args.buyer!r} of shop {args.shop!r}")
    return sent


def wait_for_assignment(args: argparse.Namespace, sent: set[str]) -> int:
    """Read Fenliu's outputs until the buyer's assignment; the exit code."""
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": f"producer-example-{uuid.uuid4()}",  # a real service: a fixed group id
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        # A dead member's partitions move after this (librdkafka's default is 45 s); the
        # Tansu broker of `fenliu dev` also takes about half of it to let the first member in.
        "session.timeout.ms": 10_000,
    })  # fmt: skip
    prefix = args.topic_prefix
    consumer.subscribe(
        [f"{prefix}.assignments", f"{prefix}.queue-updates", f"{prefix}.dead-letter"]
    )
    deadline = time.monotonic() + args.timeout
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                raise KafkaException(message.error())
            out = json.loads(message.value() or b"null")
            if not isinstance(out, dict):
                continue
            if out.get("type") == "rejected" and _ours(out, sent):
                print(f"refused: {out['error']}")
                return 2
            if out.get("shop_id") != args.shop or out.get("buyer_id") != args.buyer:
                continue  # other shops' and buyers' decisions share these topics
            print(json.dumps(out, ensure_ascii=False))
            if out["type"] == "assignment":
                return 0
    finally:
        consumer.close()
    print(f"no assignment for buyer {args.buyer!r} within {args.timeout}s")
    return 1


def _ours(rejected: dict[str, Any], sent: set[str]) -> bool:
    """Whether a dead-letter record is one of the records sent (its `raw` is the value)."""
    try:
        return json.loads(rejected.get("raw") or "null").get("id") in sent
    except (ValueError, AttributeError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    env = os.environ.get
    parser.add_argument("--bootstrap", default=env("FENLIU_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--shop", default=env("FENLIU_SHOP", "big"))
    parser.add_argument("--agent", default=env("FENLIU_AGENT", "gen-01"))
    parser.add_argument("--buyer", default=f"buyer-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--topic-prefix", default=env("FENLIU_TOPIC_PREFIX", "fenliu"))
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait")
    args = parser.parse_args()
    return wait_for_assignment(args, produce(args))


if __name__ == "__main__":
    sys.exit(main())
