"""The store writes a delta as `daemon.core.snapshot` says: a shop claimed back from a real
Redis after a run of checkpoints equals `apply_delta` of the same deltas, which is what the
property test (`test_checkpoint_deltas_rebuild_the_shop_and_continue_exactly`) checks
against full snapshots."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from daemon.core.snapshot import (
    META_FIELDS,
    RowOps,
    ShopDelta,
    StoredParts,
    apply_delta,
    apply_ops,
    delta_ops,
    stored_snapshot,
)
from daemon.service.store import Owned, ShopCheckpoint, Store

SHOP = "s1"
CAPACITY = 3


def _meta(now: int) -> dict[str, Any]:
    return {"format": 2, "shop_id": SHOP, "now": now, "seq": now, "candidates": {"g": [now]}}


def _deltas() -> list[ShopDelta]:
    """Rows set, set again, deleted (also ones never written), ids past the capacity."""
    row = lambda i, v: {"id": i, "v": v}  # noqa: E731
    return [
        ShopDelta(_meta(1), {"a1": row("a1", 1)}, {"b1": row("b1", 1)}, ["e1", "e2"]),
        ShopDelta(_meta(2), {}, {"b2": row("b2", 2), "b1": row("b1", 2)}, []),
        ShopDelta(_meta(3), {"a2": row("a2", 3)}, {"b1": None, "b9": None}, ["e3", "e4"]),
        ShopDelta(_meta(4), {"a1": None}, {}, ["e5"]),
        ShopDelta(_meta(5), {"a1": row("a1", 5)}, {"b2": None}, []),
    ]


async def test_a_claimed_shop_equals_apply_delta_of_the_deltas_written(redis_url: str) -> None:
    client: Any = aioredis.Redis.from_url(redis_url)
    try:
        store = Store(client, "t", dedup_capacity=CAPACITY)
        image: dict[str, Any] = {}
        for seq, delta in enumerate(_deltas(), start=1):
            epoch = (await store.claim_shops([SHOP]))[SHOP].epoch
            checkpoint = ShopCheckpoint(delta, {"inquiries": seq}, [])
            assert (await store.save_shops({SHOP: (Owned(epoch, 1), checkpoint)}))[SHOP] == "ok"
            apply_delta(image, delta, dedup_capacity=CAPACITY)
            stored = (await store.claim_shops([SHOP]))[SHOP]
            assert not isinstance(stored, Exception)
            assert stored.snapshot == image, f"after delta {seq}"
        assert image["seen"] == ["e3", "e4", "e5"]
        assert set(image["agents"]) == {"a1", "a2"} and set(image["buyers"]) == set()
    finally:
        await client.aclose()


def test_delta_ops_split_rows_and_trim_only_when_ids_are_appended() -> None:
    delta = ShopDelta(_meta(1), {"a1": {"id": "a1"}, "a2": None}, {"b1": None}, [])
    assert delta_ops(delta, dedup_capacity=CAPACITY) == RowOps(
        meta=_meta(1),
        set_rows={"agents": {"a1": {"id": "a1"}}, "buyers": {}},
        delete_rows={"agents": ["a2"], "buyers": ["b1"]},
        append_seen=[],
        keep_seen=None,
    )
    appended = ShopDelta(_meta(1), {}, {}, ["e1"])
    assert delta_ops(appended, dedup_capacity=CAPACITY).keep_seen == CAPACITY


def test_apply_ops_then_stored_snapshot_is_the_dump_shop_form() -> None:
    parts = StoredParts()
    for delta in _deltas():
        apply_ops(parts, delta_ops(delta, dedup_capacity=CAPACITY))
    assert parts.meta is not None
    snapshot = stored_snapshot(parts.meta, parts.agents, parts.buyers, parts.seen)
    assert list(snapshot) == [*META_FIELDS, "agents", "buyers", "seen"]
    assert snapshot["now"] == 5 and snapshot["seen"] == ["e3", "e4", "e5"]
