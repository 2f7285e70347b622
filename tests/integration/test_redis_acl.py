"""The least-privilege Redis user of docs/security.md works, and holds the daemon to its prefix.

The ACL line is read from the page itself, so the page cannot drift from what was tested:
a redis-server whose default user is off and whose only user is that line claims, checkpoints
and restores a shop and a partition through the real Store; the same user under another key
prefix is refused (it cannot read or write another deployment's keys).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.config import RedisConfig
from daemon.core.snapshot import ShopDelta
from daemon.dev.processes import HOST
from daemon.dev.redis_server import RedisServer
from daemon.service.clients import make_redis
from daemon.service.store import (
    OutboxRecord,
    Outcome,
    Owned,
    ShopCheckpoint,
    Store,
    StoredShop,
    StoreError,
)
from tests.tls import auth_and_ping

PAGE = Path(__file__).resolve().parents[2] / "docs" / "security.md"
PASSWORD = "acl-hunter2"
META = {"format": 2, "shop_id": "s1", "now": 5, "seq": 1, "candidates": {}}


def documented_acl() -> list[str]:
    """The words of the `user fenliu ...` line in docs/security.md, password filled in."""
    found = re.search(r"^ *user fenliu .*$", PAGE.read_text(encoding="utf-8"), re.MULTILINE)
    assert found, "docs/security.md has no `user fenliu ...` ACL line"
    return found.group(0).strip().replace("${REDIS_PASSWORD}", PASSWORD).split()[1:]


class AclRedis(RedisServer):
    """A redis-server whose default user is off and whose one user is the documented one."""

    def _command(self) -> list[str]:
        return [*super()._command(), "--user", "default", "off", "--user", *documented_acl()]

    def _probe(self) -> None:
        with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
            auth_and_ping(sock, "fenliu", PASSWORD)


@pytest.fixture(scope="module")
def acl_redis() -> Iterator[AclRedis]:
    with AclRedis() as server:
        yield server


def _store(server: AclRedis, prefix: str) -> Store:
    url = f"redis://fenliu:{PASSWORD}@{HOST}:{server.port}/0"
    return Store(make_redis(RedisConfig(url=url)), prefix, dedup_capacity=3)


async def test_the_documented_user_claims_checkpoints_and_restores(acl_redis: AclRedis) -> None:
    store = _store(acl_redis, "fenliu")
    try:
        await store.ping()
        assert set(await store.claim_partitions([0])) == {0}
        claimed = (await store.claim_shops(["s1"]))["s1"]
        assert isinstance(claimed, StoredShop), claimed
        delta = ShopDelta(meta=META, agents={}, buyers={"b1": {"id": "b1"}}, seen=["e1"])
        record = OutboxRecord("assignments", b"s1", b"x1")
        checkpoint = ShopCheckpoint(delta, {"inquiries": 1}, [record])
        saved = await store.save_shops({"s1": (Owned(claimed.epoch, 1), checkpoint)})
        assert saved == {"s1": Outcome.OK}
        again = (await store.claim_shops(["s1"]))["s1"]
        assert isinstance(again, StoredShop), again
        assert again.snapshot is not None and set(again.snapshot["buyers"]) == {"b1"}
        assert again.outbox == [record]
    finally:
        await store.client.aclose()


async def test_the_documented_user_cannot_touch_another_prefix(acl_redis: AclRedis) -> None:
    store = _store(acl_redis, "other")
    try:
        with pytest.raises(StoreError, match="no permissions"):
            await store.claim_partitions([0])
    finally:
        await store.client.aclose()
