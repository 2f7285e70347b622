"""End to end: the real `fenliu run` process against a real broker and Redis, Kafka only.

One daemon serves the module's SHOPS (the `daemon` fixture of tests/system/conftest.py);
every test works in its own shop, so tests do not disturb each other's state. Tests that
stop or reconfigure a daemon start their own.
"""

from __future__ import annotations

import asyncio
import signal
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon.config import TopicsConfig
from daemon.core.config import ShopConfig
from daemon.dev.stack import Broker
from daemon.tools.topics_admin import create_topics
from tests.api_schemas import api_schema
from tests.conftest import unique_topics
from tests.core.test_shop_watch import configmap
from tests.e2e import DaemonProcess, Wire, run_fenliu, write_config

pytestmark = pytest.mark.e2e

ROUTING = """
id = "routing"
sticky_window = 0
[[agents]]
id = "v1"
[[agents]]
id = "p1"
weight = 3.0
[[agents]]
id = "p2"
[[agents]]
id = "g1"
[[groups]]
name = "vip"
agents = ["v1"]
accept_unmatched = false
[groups.match]
crowd = ["vip"]
[[groups]]
name = "presale"
agents = ["p1", "p2"]
mode = "weighted"
accept_unmatched = false
[groups.match]
intents = ["presale"]
[[groups]]
name = "general"
agents = ["g1"]
"""

STICKY = """
id = "sticky"
mode = "average"
[queue]
session_timeout = "2s"
[[agents]]
id = "a1"
[[agents]]
id = "a2"
[[groups]]
name = "g"
agents = ["a1", "a2"]
"""

SUSPEND = """
id = "suspend"
sticky_window = 0
[[agents]]
id = "a1"
[[agents]]
id = "a2"
[[groups]]
name = "g"
agents = ["a1", "a2"]
"""


def queue_shop(
    shop_id: str, cap: int = 1, session_timeout: str = "3s", priority_aging: str = "0s"
) -> str:
    """One agent with a cap, queueing on, short sessions (unless told otherwise)."""
    return f"""
id = "{shop_id}"
sticky_window = 0
[queue]
enabled = true
default_cap = {cap}
session_timeout = "{session_timeout}"
repeat_entry_window = "30m"
update_interval = "1s"
priority_aging = "{priority_aging}"
[[agents]]
id = "a1"
[[agents]]
id = "a2"
[[groups]]
name = "g"
agents = ["a1", "a2"]
"""


LASTING = "10m"  # sessions that outlast a test: only a reload frees a place


async def fill_the_line(w: Wire) -> list[dict[str, Any]]:
    """a1 online, three buyers of `queue_shop`'s cap of one: b0 served, b1 and b2 queued
    (their `queued` updates)."""
    await w.status("a1", "online")
    for n in range(3):
        await w.inquiry(f"b{n}")
    return await w.wait_for(lambda e: e.get("status") == "queued", count=2)


SHOPS = {
    "routing": ROUTING,
    "sticky": STICKY,
    "suspend": SUSPEND,
    "queue": queue_shop("queue"),
    "transfer": SUSPEND.replace('id = "suspend"', 'id = "transfer"'),
    "bad": SUSPEND.replace('id = "suspend"', 'id = "bad"'),
    "console": queue_shop("console"),
    "aging": queue_shop("aging", session_timeout=LASTING, priority_aging="1s"),
}


def wire(broker: Broker, topics: TopicsConfig, shop: str) -> Wire:
    return Wire(broker.bootstrap, topics, shop)


async def test_routes_by_group_precedence_and_mode(daemon, broker, topics) -> None:
    async with wire(broker, topics, "routing") as w:
        for agent in ("v1", "p1", "p2", "g1"):
            await w.status(agent, "online")
        await w.inquiry("b-vip", context={"crowd": ["vip"], "intent": "presale"})
        await w.inquiry("b-pre", context={"intent": "presale"})
        await w.inquiry("b-other", context={"intent": "nothing"})
        vip, pre, other = [await w.assignment(b) for b in ("b-vip", "b-pre", "b-other")]
        assert (vip["agent_id"], vip["group"]) == ("v1", "vip")
        assert pre["group"] == "presale" and pre["mode"] == "weighted" and pre["reason"] == "routed"
        assert (other["agent_id"], other["group"]) == ("g1", "general")


async def test_sticky_recent_contact_returns_to_the_same_agent(daemon, broker, topics) -> None:
    async with wire(broker, topics, "sticky") as w:
        await w.status("a1", "online")
        await w.inquiry("b1")
        first = await w.assignment("b1")
        await w.status("a2", "online")
        await w.wait_for(lambda e: e["type"] == "session_closed" and e["buyer_id"] == "b1")
        await w.inquiry("b1")
        again = await w.assignment("b1", nth=2)
        assert (again["agent_id"], again["reason"]) == (first["agent_id"], "sticky")


async def test_suspended_agent_gets_no_new_buyers(daemon, broker, topics) -> None:
    async with wire(broker, topics, "suspend") as w:
        await w.status("a1", "online")
        await w.status("a2", "online")
        await w.status("a2", "suspended")
        for n in range(4):
            await w.inquiry(f"b{n}")
        got = [await w.assignment(f"b{n}") for n in range(4)]
        assert {a["agent_id"] for a in got} == {"a1"}


async def test_queue_cap_timeout_dequeue_repeat_entry_and_leave(daemon, broker, topics) -> None:
    async with wire(broker, topics, "queue") as w:
        await w.status("a1", "online")
        await w.inquiry("b1")
        await w.inquiry("b2")
        await w.inquiry("b3")
        await w.wait_for(lambda e: e.get("status") == "queued", count=2)
        await w.send(topics.inquiries, {"type": "leave", "buyer_id": "b3"})
        await w.wait_for(lambda e: e.get("status") == "left" and e["buyer_id"] == "b3")
        # b1's session times out after 3 s of silence: b2 is served from the queue
        served = await w.assignment("b2", timeout=15)
        assert (served["agent_id"], served["reason"]) == ("a1", "dequeued")
        assert served["waited_ms"] >= 2000
        # b1 comes back within the repeat-entry window: a1 takes it above its cap of 1
        await w.inquiry("b1")
        back = await w.assignment("b1", nth=2)
        assert (back["agent_id"], back["reason"]) == ("a1", "repeat_entry")


async def test_a_buyer_who_waited_long_enough_goes_before_a_later_higher_priority_one(
    daemon, broker, topics
) -> None:
    """contract §3.1 `priority_aging` ("1s" here): a priority-0 buyer who has waited 2 s or
    more stands with or above a priority-2 newcomer, and is served first."""
    async with wire(broker, topics, "aging") as w:
        await w.status("a1", "online")
        await w.inquiry("b0")
        await w.assignment("b0")  # a1's one place, for the whole test
        await w.inquiry("old")
        (old,) = await w.wait_for(lambda e: e.get("status") == "queued" and e["buyer_id"] == "old")
        await w.settle(3.0)  # old waits
        await w.inquiry("vip", priority=2)
        (vip,) = await w.wait_for(lambda e: e.get("status") == "queued" and e["buyer_id"] == "vip")
        assert vip["ts"] - old["ts"] >= 2000  # by the daemon's clock: old stands at 2 or more
        assert vip["position"] == 2  # without aging, 1
        await w.status("a2", "online")  # one place frees: the head of the line takes it
        served = await w.assignment("old")
        assert (served["agent_id"], served["reason"]) == ("a2", "dequeued")
        assert not [e for e in w.seen if e["type"] == "assignment" and e["buyer_id"] == "vip"]


async def test_transfer_moves_the_session(daemon, broker, topics) -> None:
    async with wire(broker, topics, "transfer") as w:
        await w.status("a1", "online")
        await w.inquiry("b1")
        await w.assignment("b1")
        await w.status("a2", "online")
        tid = await w.send(
            topics.inquiries, {"type": "transfer", "buyer_id": "b1", "to_agent": "a2"}
        )
        moved = await w.assignment("b1", nth=2)
        assert (moved["agent_id"], moved["reason"], moved["id"]) == ("a2", "transfer", f"asg:{tid}")
        await w.wait_for(lambda e: e["type"] == "session_closed" and e["reason"] == "transferred")


BAD_RECORDS = [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"type": "inquiry", "id": "x1", "shop_id": "bad", "ts": 1}', "buyer_id"),
    (b'{"type": "explode", "id": "x2", "shop_id": "bad", "ts": 1}', "explode"),
    (b'{"type": "inquiry", "id": "x3", "shop_id": "bad", "ts": "soon", "buyer_id": "b"}', "ts"),
    (b"\xff\xfe", "UTF-8"),
    (b'{"type": "inquiry", "id": "x4", "shop_id": "bad", "ts": 1, "buyer_id": "b", "pad": "'
     + b"x" * 70_000 + b'"}', "64 KiB"),
]  # fmt: skip


async def test_bad_input_goes_to_dead_letter_with_its_reason_and_the_daemon_goes_on(
    daemon, broker, topics
) -> None:
    async with Wire(broker.bootstrap, topics, "bad", also=("other-key",)) as w:
        for value, _ in BAD_RECORDS:
            await w.send(topics.inquiries, value)
        await w.send(
            topics.agent_status, {"type": "agent_status", "agent_id": "ghost", "status": "online"}
        )
        await w.send(topics.inquiries, {"type": "inquiry", "buyer_id": "b"}, key="other-key")
        dead = await w.wait_for(lambda e: e["type"] == "rejected", count=len(BAD_RECORDS) + 2)
        errors = " | ".join(e["error"] for e in dead)
        for _, expected in BAD_RECORDS:
            assert expected in errors
        assert "ghost" in errors and "differs" in errors
        assert all(e["source_topic"] and e["offset"] >= 0 for e in dead)
        assert any(e.get("raw_encoding") == "base64" for e in dead)
        await w.status("a1", "online")
        await w.inquiry("b-after")
        assert (await w.assignment("b-after"))["agent_id"] == "a1"


async def test_unknown_shop_is_dead_lettered(daemon, broker, topics) -> None:
    async with wire(broker, topics, "nowhere") as w:
        await w.inquiry("b1")
        dead = await w.wait_for(lambda e: e["type"] == "rejected")
        assert "nowhere" in dead[0]["error"] and "not configured" in dead[0]["error"]


def test_metrics_and_readiness_are_served(daemon: DaemonProcess) -> None:
    assert daemon.get("/healthz")[0] == 200
    assert daemon.get("/readyz")[0] == 200
    status, body = daemon.get("/metrics")
    assert status == 200
    for name in (
        "fenliu_events_in_total", "fenliu_decision_seconds_bucket", "fenliu_queue_length",
        "fenliu_shop_open_sessions", "fenliu_agents", "fenliu_consumer_lag",
        'fenliu_gc_pause_seconds_bucket{generation="2"',
    ):  # fmt: skip
        assert name in body, name
    assert daemon.get("/-/reload", method="GET")[0] == 405


def api_get(daemon: DaemonProcess, path: str, until: Callable[[int, Any], bool]) -> Any:
    """GET a JSON answer until `until(status, data)` holds (the API shows the loop's view,
    built at most once a second); the last answer when it does."""
    deadline = time.monotonic() + 20
    while True:
        status, body = daemon.get(path)
        data = orjson.loads(body) if body else None
        if until(status, data):
            return data
        assert time.monotonic() < deadline, f"{path}: {status} {body}"
        time.sleep(0.2)


async def test_the_json_api_shows_agents_queues_and_decisions(daemon, broker, topics) -> None:
    """contract §8: real answers of a real daemon, valid against docs/api/*.schema.json."""
    async with wire(broker, topics, "console") as w:
        await w.status("a1", "online")
        await w.status("a2", "online")
        await w.status("a2", "suspended")
        for n in range(3):
            await w.inquiry(f"b{n}", priority=1 if n == 2 else 0)
        await w.assignment("b0")
        await w.wait_for(lambda e: e.get("status") == "queued", count=2)

    def waiting(status: int, data: Any) -> bool:
        return status == 200 and sum(len(q["buyers"]) for q in data["queues"]) == 2

    shop = api_get(daemon, "/api/shops/console", waiting)
    api_schema("shop").validate(shop)
    assert shop["id"] == "console" and shop["mode"] == "efficiency"
    agents = {a["id"]: a for a in shop["agents"]}
    assert agents["a1"]["status"] == "online" and agents["a1"]["open_sessions"] == 1
    assert agents["a1"]["cap"] == 1 and not agents["a1"]["busy"]
    assert agents["a2"]["status"] == "suspended" and agents["a2"]["suspended"]
    (line,) = [q for q in shop["queues"] if q["buyers"]]
    assert [(b["buyer_id"], b["position"]) for b in line["buyers"]] == [("b2", 1), ("b1", 2)]
    assert line["buyers"][0]["priority"] == 1 and line["buyers"][0]["estimated_wait_s"] is not None
    decisions = shop["decisions"]
    assert decisions == sorted(decisions, key=lambda d: -d["at"])
    (given,) = [d for d in decisions if d["type"] == "assignment"]
    assert (given["buyer_id"], given["agent_id"], given["rule"]) == (
        "b0",
        "a1",
        "routed/efficiency",
    )
    assert {d["buyer_id"] for d in decisions if d["reason"] == "queued"} == {"b1", "b2"}

    listed = api_get(daemon, "/api/shops", lambda status, data: status == 200)
    api_schema("shops").validate(listed)
    ids = [s["id"] for s in listed["shops"]]
    assert ids == sorted(SHOPS)
    (row,) = [s for s in listed["shops"] if s["id"] == "console"]
    assert (row["agents_online"], row["open_sessions"], row["queued"]) == (1, 1, 2)
    assert row["oldest_wait_s"] >= 0

    explained = api_get(daemon, "/api/shops/console/explain", lambda status, data: status == 200)
    api_schema("explain").validate(explained)
    assert explained["shop_id"] == "console" and isinstance(explained["partition"], int)
    assert {a["id"] for a in explained["agents"]} == {"a1", "a2"}

    status, body = daemon.get("/api/shops/nowhere")
    assert status == 404
    error = orjson.loads(body)
    api_schema("error").validate(error)
    assert error["configured"] is False and "not configured" in error["error"]
    assert daemon.get("/shops/console/explain")[0] == 200  # the old path, redirected
    status, page = daemon.get("/")
    assert status == 200 and "/api/shops" in page


def test_the_heap_is_reset_once_the_partitions_are_restored(daemon: DaemonProcess) -> None:
    """docs/daemon.md, Memory: the restore thaws, collects and freezes again, and says so."""
    lines = [orjson.loads(ln) for ln in daemon.log_path.read_text().splitlines() if ln[:1] == "{"]
    resets = [ln for ln in lines if ln.get("event") == "gc_reset"]
    assert resets and resets[0]["reason"] == "restore" and resets[0]["frozen"] > 0
    restored = next(i for i, ln in enumerate(lines) if ln.get("event") == "restored")
    assert lines.index(resets[0]) > restored


# ------------------------------------------------------------- daemons of their own


async def own_daemon(
    broker: Broker, redis_url: str, folder: Path, shops: dict[str, str]
) -> tuple[DaemonProcess, TopicsConfig]:
    topics = unique_topics()
    await create_topics(broker.bootstrap, topics, partitions=2)
    config = write_config(
        folder, bootstrap=broker.bootstrap, redis_url=redis_url, topics=topics, shops=shops,
        group_id=f"own-{topics.inquiries}",
    )  # fmt: skip
    return DaemonProcess(config).start(), topics


async def test_sighup_raising_a_cap_serves_waiting_buyers(broker, redis_url, tmp_path) -> None:
    process, topics = await own_daemon(broker, redis_url, tmp_path, {"q": queue_shop("q", cap=1)})
    try:
        async with wire(broker, topics, "q") as w:
            await fill_the_line(w)
            (tmp_path / "shops" / "q.toml").write_text(queue_shop("q", cap=3))
            process.signal(signal.SIGHUP)
            for n in (1, 2):
                assert (await w.assignment(f"b{n}", timeout=10))["reason"] == "dequeued"
        (tmp_path / "shops" / "q.toml").write_text("id = 'q'\nmode = 'fastest'\n")
        status, body = process.get("/-/reload", method="POST")
        assert status == 422 and "mode" in body
        metrics = process.fresh_metrics()
        assert 'fenliu_reloads_total{result="failed"} 1.0' in metrics
        assert "fenliu_config_last_reload_successful 0.0" in metrics  # FenliuReloadFailed
    finally:
        code, _ = process.stop()
    assert code == 0


async def test_fenliu_reload_reaches_the_daemon_after_its_listen_was_edited(
    broker, redis_url, tmp_path
) -> None:
    """`fenliu reload` finds the daemon on the Unix socket it started with (contract §5,
    Reload), not at the address the edited file names now; `--url` names it outright."""
    process, _ = await own_daemon(broker, redis_url, tmp_path, {"q": queue_shop("q", cap=1)})
    config, old = process.config, process.http
    try:
        config.write_text(config.read_text().replace(f'"{old}"', '"127.0.0.1:1"'))
        (tmp_path / "shops" / "q.toml").write_text(queue_shop("q", cap=3))
        found = await asyncio.to_thread(run_fenliu, "reload", "--config", str(config))
        assert found.returncode == 0, found.stderr
        lines = found.stdout.splitlines()
        assert lines[0] == "reloaded 1 shop(s) (http changes need a restart)"
        assert lines[1:3] == ["~ shop q (modified)", "    queue.default_cap: 1 -> 3"]
        assert "fenliu_shop_open_sessions" in process.fresh_metrics()  # still serving
        by_url = await asyncio.to_thread(
            run_fenliu, "reload", "--config", str(config), "--url", f"http://{old}/"
        )
        assert by_url.returncode == 0 and by_url.stdout.startswith("reloaded 1 shop(s)")
        nobody = await asyncio.to_thread(
            run_fenliu, "reload", "--config", str(config), "--url", "http://127.0.0.1:1"
        )
        assert nobody.returncode == 1
        assert "no daemon answered at http://127.0.0.1:1" in nobody.stderr
    finally:
        code, _ = process.stop()
    assert code == 0
    gone = await asyncio.to_thread(run_fenliu, "reload", "--config", str(config))
    assert gone.returncode == 1, "the socket went with the daemon: the file's listen is asked"
    assert "no daemon answered at http://127.0.0.1:1/-/reload" in gone.stderr


async def test_a_dry_run_changes_nothing_and_the_reload_then_does_what_it_said(
    broker, redis_url, tmp_path
) -> None:
    """contract §5, Dry run and Apply: `fenliu reload --dry-run --json` reports per shop what the
    files on disk change and what would happen to its buyers, and nothing happens; `fenliu
    reload --json` then applies them and reports the same, and it happens."""

    process, topics = await own_daemon(
        broker, redis_url, tmp_path, {"q": queue_shop("q", 1, LASTING)}
    )
    config = str(process.config)
    try:
        async with wire(broker, topics, "q") as w:
            await fill_the_line(w)
            (tmp_path / "shops" / "q.toml").write_text(queue_shop("q", 3, LASTING))
            dry = await asyncio.to_thread(
                run_fenliu, "reload", "--config", config, "--dry-run", "--json"
            )
            assert dry.returncode == 0, dry.stderr
            planned = orjson.loads(dry.stdout)
            assert planned["applied"] is False
            assert planned["shops"] == [
                {
                    "shop": "q",
                    "change": "modified",
                    "changes": ["queue.default_cap: 1 -> 3"],
                    "effects": {
                        "assigned": 2,
                        "queued": 0,
                        "moved": 0,
                        "expired": 0,
                        "above_cap": 0,
                    },
                }
            ]
            await w.settle(2)  # the dry run served nobody
            assert not [e for e in w.seen if e["type"] == "assignment" and e["buyer_id"] != "b0"]
            human = await asyncio.to_thread(run_fenliu, "reload", "--config", config, "--dry-run")
            assert "=> at once: 2 assigned from a line" in human.stdout
            assert "Dry run, nothing applied: 0 added, 1 modified, 0 removed." in human.stdout
            done = await asyncio.to_thread(run_fenliu, "reload", "--config", config, "--json")
            assert done.returncode == 0, done.stderr
            applied = orjson.loads(done.stdout)
            assert applied["applied"] is True and applied["shops"] == planned["shops"]
            for n in (1, 2):
                assert (await w.assignment(f"b{n}", timeout=10))["reason"] == "dequeued"
    finally:
        code, _ = process.stop()
    assert code == 0


async def test_shops_watch_reloads_a_configmap_swap_and_never_half_a_file(
    broker, redis_url, tmp_path
) -> None:
    """contract §5, `[shops] watch`: a Kubernetes ConfigMap update (a new folder, then the
    `..data` link renamed to it) is reloaded with no command; a file caught half written is a
    failed reload that changes nothing, tried again at the next change."""

    topics = unique_topics()
    await create_topics(broker.bootstrap, topics, partitions=2)
    config = write_config(
        tmp_path, bootstrap=broker.bootstrap, redis_url=redis_url, topics=topics, shops={},
        group_id=f"own-{topics.inquiries}",
    )  # fmt: skip
    config.write_text(config.read_text().replace("[shops]\n", '[shops]\nwatch = "1s"\n'))
    configmap(tmp_path / "shops", {"q.toml": queue_shop("q", 1, LASTING)}, "v1")
    process = DaemonProcess(config).start()
    try:
        async with wire(broker, topics, "q") as w:
            await fill_the_line(w)
            configmap(
                tmp_path / "shops", {"q.toml": queue_shop("q", 3, LASTING)[:40]}, "v2"
            )  # half written
            await asyncio.to_thread(
                until_metric, process, 'fenliu_reloads_total{result="failed"} 1.0'
            )
            assert "fenliu_config_last_reload_successful 0.0" in process.fresh_metrics()
            assert not [e for e in w.seen if e["type"] == "assignment" and e["buyer_id"] != "b0"]
            configmap(
                tmp_path / "shops", {"q.toml": queue_shop("q", 3, LASTING)}, "v3"
            )  # the whole file
            for n in (1, 2):
                assert (await w.assignment(f"b{n}", timeout=20))["reason"] == "dequeued"
        assert "fenliu_config_last_reload_successful 1.0" in process.fresh_metrics()
        changed = [ln for ln in process.log_tail(400).splitlines() if "shop_files_changed" in ln]
        assert len(changed) >= 2
    finally:
        code, _ = process.stop()
    assert code == 0


def until_metric(process: DaemonProcess, line: str) -> None:
    """Wait until /metrics has `line` (20 s at most)."""
    deadline = time.monotonic() + 20
    while line not in process.fresh_metrics():
        assert time.monotonic() < deadline, f"{line} not in /metrics"


async def test_sigterm_drains_and_exits_zero_within_ten_seconds(
    broker, redis_url, tmp_path
) -> None:
    process, topics = await own_daemon(
        broker, redis_url, tmp_path, {"s": SUSPEND.replace('"suspend"', '"s"')}
    )
    async with wire(broker, topics, "s") as w:
        await w.status("a1", "online")
        for n in range(50):
            await w.inquiry(f"b{n}")
        code, took = process.stop()
    assert code == 0 and took < 10, process.log_tail()
    log = process.log_tail(5)
    assert '"event":"service_stopped"' in log
    assert time.monotonic() > 0


async def test_outputs_and_the_api_name_the_configuration_that_decided(
    broker, redis_url, tmp_path
) -> None:
    """contract §1.3 and §8: every output carries its shop file's version (`config`), the API
    shows the version in force and when it was loaded, and a reload moves both."""
    before, after = queue_shop("q", cap=1), queue_shop("q", cap=3)
    version = {
        text: ShopConfig.model_validate(tomllib.loads(text)).version for text in (before, after)
    }
    process, topics = await own_daemon(broker, redis_url, tmp_path, {"q": before})
    try:
        async with wire(broker, topics, "q") as w:
            queued = await fill_the_line(w)
            assert (await w.assignment("b0"))["config"] == version[before]
            assert {e["config"] for e in queued} == {version[before]}
            first = api_get(process, "/api/shops/q", lambda status, data: status == 200)
            api_schema("shop").validate(first)
            assert first["config"] == version[before]
            (tmp_path / "shops" / "q.toml").write_text(after)
            process.signal(signal.SIGHUP)
            served = [await w.assignment(f"b{n}", timeout=10) for n in (1, 2)]
            assert {a["config"] for a in served} == {version[after]}
        second = api_get(
            process,
            "/api/shops/q",
            lambda status, data: status == 200 and data["config"] == version[after],
        )
        assert second["config_loaded_at"] > first["config_loaded_at"]
    finally:
        code, _ = process.stop()
    assert code == 0
