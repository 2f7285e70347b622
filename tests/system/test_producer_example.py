"""docs/producers.md's Python example (docs/examples/producer.py, confluent-kafka) run as a
user runs it, against a real `fenliu run`, the session's broker and Redis: its producer's
records land on their shop's partition (murmur2) and its consumer sees the buyer assigned.
That the guide quotes the example as it is: tests/core/test_producer_guide.py."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from daemon.config import TopicsConfig
from daemon.dev.stack import Broker
from daemon.tools.topics_admin import create_topics
from tests.conftest import run_sync
from tests.e2e import DaemonProcess

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "producer.py"
SHOPS = {
    "guide": """
id = "guide"
[[agents]]
id = "a1"
[[groups]]
name = "all"
agents = ["a1"]
""",
}


@pytest.fixture(scope="module")
def topics(broker: Broker) -> TopicsConfig:
    """The default topic names under a prefix of this module's own, 4 partitions each (the
    example takes the prefix, as it would take `fenliu`)."""
    prefix = f"guide{uuid.uuid4().hex[:8]}"
    names = TopicsConfig()
    fresh = TopicsConfig(**{
        field: prefix + "." + getattr(names, field).split(".", 1)[1]
        for field in TopicsConfig.model_fields
    })  # fmt: skip
    run_sync(create_topics(broker.bootstrap, fresh, partitions=4))
    return fresh


def run_example(
    broker: Broker, topics: TopicsConfig, *args: str
) -> subprocess.CompletedProcess[str]:
    prefix = topics.inquiries.split(".", 1)[0]
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--bootstrap", broker.bootstrap, "--topic-prefix", prefix,
         "--timeout", "45", *args],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


def test_the_examples_consumer_sees_its_buyer_assigned(
    daemon: DaemonProcess, broker: Broker, topics: TopicsConfig
) -> None:
    done = run_example(broker, topics, "--shop", "guide", "--agent", "a1", "--buyer", "b-guide")
    assert done.returncode == 0, done.stdout + done.stderr + daemon.log_tail()
    last = done.stdout.strip().splitlines()[-1]
    assert '"type": "assignment"' in last
    assert '"buyer_id": "b-guide"' in last and '"agent_id": "a1"' in last


def test_the_example_reports_a_refused_record(
    daemon: DaemonProcess, broker: Broker, topics: TopicsConfig
) -> None:
    """A shop no shop file configures: the example finds its record in the dead-letter topic
    and says why (exit 2), rather than waiting for an assignment that cannot come."""
    done = run_example(broker, topics, "--shop", "nowhere", "--agent", "a1")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refused: shop_id 'nowhere' is not configured" in done.stdout
