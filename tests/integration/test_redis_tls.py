"""Redis over TLS (contract §5): the store checkpoints through `rediss://` to a real
TLS-only redis-server, trusting a throw-away CA named by `ssl_ca_certs` in the URL; a CA that
did not sign the server's certificate is a TLS failure (`redis_tls_failed`, `tls: ...`), not
an outage, and the password in the URL is in no log line. The Kafka client's handshake
failing against the same TLS endpoint is named TLS in its library line."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from daemon.config import KafkaConfig, RedisConfig
from daemon.core.snapshot import ShopDelta
from daemon.dev.processes import free_port
from daemon.service.clients import (
    KafkaUnreachableError,
    kafka_client_kwargs,
    make_redis,
    partition_counts,
)
from daemon.service.logs import LINE_MAX, configure_logging, get_logger
from daemon.service.readiness import redis_answers
from daemon.service.store import (
    OutboxRecord,
    Outcome,
    Owned,
    ShopCheckpoint,
    Store,
    StoredShop,
    StoreError,
)
from tests.tls import KEY_PASSWORD, Certs, TlsRedis, make_certs

PASSWORD = "redis-hunter2"
SHOP = "s1"
META = {"format": 2, "shop_id": SHOP, "now": 5, "seq": 1, "candidates": {}}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_redis(certs: Certs) -> Iterator[TlsRedis]:
    with TlsRedis(certs, PASSWORD) as server:
        yield server


def _store(url: str) -> Store:
    return Store(make_redis(RedisConfig(url=url)), "tls", dedup_capacity=3)


async def test_a_checkpoint_goes_to_redis_over_tls(tls_redis: TlsRedis, certs: Certs) -> None:
    store = _store(tls_redis.tls_url(certs.ca))
    try:
        claimed = (await store.claim_shops([SHOP]))[SHOP]
        assert isinstance(claimed, StoredShop), claimed
        epoch = claimed.epoch
        delta = ShopDelta(meta=META, agents={}, buyers={"b1": {"id": "b1"}}, seen=["e1"])
        record = OutboxRecord("assignments", SHOP.encode(), b"x1")
        checkpoint = ShopCheckpoint(delta, {"inquiries": 1}, [record])
        saved = await store.save_shops({SHOP: (Owned(epoch, 1), checkpoint)})
        assert saved == {SHOP: Outcome.OK}
        stored = (await store.claim_shops([SHOP]))[SHOP]
        assert isinstance(stored, StoredShop), stored
        assert stored.snapshot is not None and set(stored.snapshot["buyers"]) == {"b1"}
        assert (stored.offsets, stored.outbox) == ({"inquiries": 1}, [record])
    finally:
        await store.client.aclose()


async def test_a_client_certificate_is_sent_when_redis_asks_for_one(
    certs: Certs, tmp_path: Path
) -> None:
    """`--tls-auth-clients yes`: the URL's ssl_certfile, ssl_keyfile and ssl_password (the
    key's, redacted like any password) make the handshake; without them it fails as TLS."""
    with TlsRedis(certs, PASSWORD, auth_clients=True) as server:
        url = server.tls_url(certs.ca)
        mutual = (
            f"{url}&ssl_certfile={certs.client_cert}&ssl_keyfile={certs.client_key}"
            f"&ssl_password={KEY_PASSWORD}"
        )
        assert KEY_PASSWORD not in RedisConfig(url=mutual).redacted_url
        store = _store(mutual)
        try:
            await store.ping()
        finally:
            await store.client.aclose()
        store = _store(url)
        try:
            with pytest.raises(StoreError) as refused:
                await store.ping()
        finally:
            await store.client.aclose()
        assert refused.value.tls, str(refused.value)


def _log_lines(stream: io.BytesIO) -> list[dict[str, object]]:
    raw = stream.getvalue()
    assert PASSWORD.encode() not in raw
    lines = raw.splitlines()
    assert all(len(line) < LINE_MAX for line in lines)
    return [orjson.loads(line) for line in lines]


async def test_a_wrong_ca_is_logged_as_tls_not_as_unreachable(
    tls_redis: TlsRedis, certs: Certs
) -> None:
    stream = io.BytesIO()
    configure_logging("info", stream=stream)
    log = get_logger()
    wrong = _store(tls_redis.tls_url(certs.other_ca))
    down = _store(f"rediss://:{PASSWORD}@127.0.0.1:{free_port()}/0?ssl_ca_certs={certs.ca}")
    try:
        assert not await redis_answers(wrong, was_ok=True, log=log)
        assert not await redis_answers(down, was_ok=True, log=log)
        with pytest.raises(StoreError) as failed:
            await wrong.claim_shops([SHOP])
        log.error("restore_failed", error=str(failed.value))
    finally:
        await wrong.client.aclose()
        await down.client.aclose()
    tls, unreachable, restore = _log_lines(stream)
    assert (tls["event"], tls["error"]) == (
        "redis_tls_failed",
        "Redis: tls: certificate verify failed: self-signed certificate in certificate chain",
    )
    assert unreachable["event"] == "redis_unreachable"
    assert str(unreachable["error"]).startswith("Redis: unreachable: ")
    assert "tls: certificate verify failed" in str(restore["error"])


async def test_a_kafka_tls_failure_is_named_in_the_library_line(
    tls_redis: TlsRedis, certs: Certs
) -> None:
    """aiokafka logs a failed handshake as "Unable connect to …" and raises only that it
    could not bootstrap: the library line carries the TLS reason (`tls`). Any TLS endpoint
    shows it; the TLS Redis is at hand, its certificate signed by a CA not trusted here."""
    stream = io.BytesIO()
    configure_logging("info", stream=stream)
    kafka = KafkaConfig(
        bootstrap_servers=f"127.0.0.1:{tls_redis.port}",
        security_protocol="SSL",
        ssl_cafile=certs.other_ca,
    )
    with pytest.raises(KafkaUnreachableError):
        await partition_counts(kafka.bootstrap_servers, ["t"], kafka_client_kwargs(kafka))
    tls = [line for line in _log_lines(stream) if "tls" in line]
    assert tls, stream.getvalue()
    assert tls[0]["event"] == "library_log"
    assert tls[0]["tls"] == (
        "certificate verify failed: self-signed certificate in certificate chain"
    )
