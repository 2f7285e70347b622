"""`fenliu topics create` and the Kafka client settings every client of the daemon shares."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import SecretStr

from daemon.config import KafkaConfig, TopicsConfig
from daemon.dev.stack import Broker, free_port
from daemon.service.clients import KafkaUnreachableError, kafka_client_kwargs, partition_counts
from tests.conftest import unique_topics
from tests.e2e import kafka_only_config, run_fenliu

REPO = Path(__file__).resolve().parents[2]


# --- fenliu topics create ---------------------------------------------------------------------


def test_topics_create_creates_the_six_topics_then_finds_them_existing(
    broker: Broker, tmp_path: Path
) -> None:
    topics = unique_topics()
    config = kafka_only_config(tmp_path, broker.bootstrap, topics)
    first = run_fenliu("topics", "create", "--config", str(config), "--partitions", "2")
    assert (first.returncode, first.stderr) == (0, "")
    assert first.stdout.splitlines() == [f"created {name} (2 partitions)" for _, name in topics]
    again = run_fenliu("topics", "create", "--config", str(config), "--partitions", "2")
    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout.splitlines() == [f"exists  {name} (2 partitions)" for _, name in topics]


def test_topics_create_against_no_broker_is_one_line_and_exit_1(tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    config = kafka_only_config(tmp_path, bootstrap, TopicsConfig())
    started = time.monotonic()
    result = run_fenliu("topics", "create", "--config", str(config))
    assert time.monotonic() - started < 12
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"fenliu topics create: cannot connect to Kafka at {bootstrap}\n"


async def test_topics_create_refuses_input_topics_with_different_partition_counts(
    broker: Broker, tmp_path: Path
) -> None:
    topics = unique_topics()
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topics.messages, 2, 1)])
    finally:
        await admin.close()
    config = kafka_only_config(tmp_path, broker.bootstrap, topics)
    result = run_fenliu("topics", "create", "--config", str(config), "--partitions", "4")
    assert result.returncode == 1
    assert f"exists  {topics.messages} (2 partitions)" in result.stdout.splitlines()
    assert "input topics have different partition counts" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_topics_create_with_a_bad_config_prints_its_problems(tmp_path: Path) -> None:
    config = kafka_only_config(tmp_path, "127.0.0.1:9092", TopicsConfig())
    (tmp_path / "shops" / "small.toml").unlink()
    result = run_fenliu("topics", "create", "--config", str(config))
    assert result.returncode == 1
    assert (
        result.stderr
        == f"{config}: shops.dir: folder {tmp_path / 'shops'} has no *.toml shop files\n"
    )


def test_topics_create_rejects_zero_partitions(tmp_path: Path) -> None:
    result = run_fenliu(
        "topics", "create", "--config", str(tmp_path / "f.toml"), "--partitions", "0"
    )
    assert result.returncode == 2
    assert "'0' is not a whole number of at least 1" in result.stderr


async def test_partition_counts_of_an_unreachable_broker_is_a_typed_error() -> None:
    with pytest.raises(KafkaUnreachableError, match="cannot connect to Kafka"):
        await partition_counts(f"127.0.0.1:{free_port()}", ["fenliu.inquiries"])


# --- kafka_client_kwargs ----------------------------------------------------------------------


def test_plaintext_needs_only_the_protocol() -> None:
    kafka = KafkaConfig(bootstrap_servers="k:9092")
    assert kafka_client_kwargs(kafka) == {"security_protocol": "PLAINTEXT"}


def test_client_id_and_sasl_plaintext_settings_are_passed_with_the_password() -> None:
    kafka = KafkaConfig(
        bootstrap_servers="k:9092",
        client_id="fenliu-1",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="fenliu",
        sasl_password=SecretStr("s3cret"),
    )
    assert kafka_client_kwargs(kafka) == {
        "client_id": "fenliu-1",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "fenliu",
        "sasl_plain_password": "s3cret",
    }


def test_ssl_without_a_ca_file_verifies_against_the_system_cas() -> None:
    kwargs = kafka_client_kwargs(KafkaConfig(bootstrap_servers="k:9093", security_protocol="SSL"))
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a CA")
def test_sasl_ssl_loads_the_configured_ca_file(tmp_path: Path) -> None:
    cafile = tmp_path / "ca.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=fenliu-test-ca", "-keyout", str(tmp_path / "ca.key")),
            *("-out", str(cafile)),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    kafka = KafkaConfig(
        bootstrap_servers="k:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=SecretStr("p"),
        ssl_cafile=cafile,
    )
    kwargs = kafka_client_kwargs(kafka)
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    (ca,) = context.get_ca_certs()
    assert (("commonName", "fenliu-test-ca"),) in ca["subject"]
    assert kwargs["sasl_plain_password"] == "p"
