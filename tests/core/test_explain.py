"""`fenliu explain` (issue 5, item 4): each agent's share of buyers and what made it.

The explanation is derived from what the engine recorded per assignment, so these tests
drive a real engine with events, then hold the explanation against the decisions the
engine published: the per-rule parts of every agent's share add up to its share, the
shares to one, and each part counts exactly the assignments of that rule and mode.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from daemon.cli import main
from daemon.config import FenliuConfig, KafkaConfig, RedisConfig
from daemon.core.explain import explain_shop, render_table
from daemon.core.snapshot import dump_shop, load_shop
from daemon.service.control_plane import routes
from daemon.service.http import HttpServer
from daemon.service.run import Service
from daemon.tools.explain import ExplainError, fetch
from tests.scenario import SHOP, T0, Scenario, group, shop

AGENTS = ["a1", "a2", "a3", "a4"]


def _mixed_day() -> Scenario:
    """A shop where agents get buyers by every rule: routed by conversion priority and by
    efficiency, dequeued, sticky, repeat entry and transfer."""
    config = shop(
        [{"id": "a1", "level": 5}, "a2", {"id": "a3", "weight": 2.0}, "a4"],
        groups=[
            group(
                "presale",
                ["a1", "a2"],
                mode="conversion",
                conversion_strength="high",
                match={"intents": ["presale"]},
            ),
            group("aftersale", ["a3", "a4"], match={"intents": ["aftersale"]}),
        ],
        queue={"enabled": True, "default_cap": 2},
        conversion_min_agents=0,
    )
    sc = Scenario(config)
    sc.at("0s").online("a1", "a2", "a3")
    for i in range(5):  # four take the presale caps (2 + 2), the fifth queues
        sc.inquiry(f"p{i}", intent="presale")
    for i in range(3):
        sc.inquiry(f"s{i}", intent="aftersale")
    sc.order("p0")
    sc.after("11m")  # sessions time out: the queued buyer is dequeued, then times out too
    for i in range(2):
        sc.after("1m").inquiry(f"p{i}", intent="presale")  # back within 30m: repeat entry
    sc.at("2h").online("a4")
    for i in range(3):
        sc.inquiry(f"s{i}", intent="aftersale")  # back after 30m, within 72h: sticky
    sc.inquiry("x1", intent="aftersale")
    sc.transfer("x1", to_agent="a3" if sc.assigned("x1")[0] == "a4" else "a4")
    sc.at("3h")
    return sc


def _rule(reason: str, mode: str | None) -> str:
    return reason if mode is None else f"{reason}/{mode}"


def test_every_agents_rule_parts_add_up_to_its_share_and_shares_to_one() -> None:
    sc = _mixed_day()
    e = explain_shop(sc.engine.shop(SHOP), sc.now)
    assert [a["id"] for a in e["agents"]] == AGENTS
    total = e["assignments"]
    assert total == sum(a["assignments"] for a in e["agents"]) > 0
    assert math.isclose(sum(a["share"] for a in e["agents"]), 1.0, rel_tol=1e-12)
    for agent in e["agents"]:
        parts = agent["by_rule"].values()
        assert sum(p["assignments"] for p in parts) == agent["assignments"]
        assert math.isclose(sum(p["share"] for p in parts), agent["share"], abs_tol=1e-12)
        assert sum(agent["by_group"].values()) == agent["assignments"]
        if agent["assignments"]:
            assert math.isclose(sum(p["of_agent"] for p in parts), 1.0, rel_tol=1e-12)
    assert sum(e["rules"].values()) == total


def test_attribution_counts_exactly_the_assignments_the_engine_published() -> None:
    sc = _mixed_day()
    published: dict[str, Counter[str]] = {a: Counter() for a in AGENTS}
    for a in sc.assignments():
        if a.reason.value != "active_session":  # the buyer keeps its agent: no new share
            published[a.agent_id][_rule(a.reason.value, a.mode and a.mode.value)] += 1
    e = explain_shop(sc.engine.shop(SHOP), sc.now)
    for agent in e["agents"]:
        got = {rule: p["assignments"] for rule, p in agent["by_rule"].items()}
        assert got == dict(published[agent["id"]]), agent["id"]
    assert set(e["rules"]) >= {
        "routed/conversion",
        "routed/efficiency",
        "dequeued/conversion",
        "sticky",
        "repeat_entry",
        "transfer",
    }


def test_agent_online_twice_as_long_shows_it_counting_the_current_stretch() -> None:
    sc = Scenario(shop(["a1", "a2"]))
    sc.at("0s").online("a1")
    sc.at("1h").status("suspended", "a1")  # suspended time is not online time
    sc.at("90m").online("a1")
    sc.at("3h").online("a2")
    for i in range(4):
        sc.at(f"{3 * 60 + i}m").inquiry(f"b{i}")
    now = T0 + 4 * 3_600_000
    e = explain_shop(sc.engine.shop(SHOP), now)
    a1, a2 = e["agents"]
    assert a2["online_ms"] == 3_600_000  # still online: counted up to `now`
    assert a1["online_ms"] == 3_600_000 + 150 * 60_000  # 0-1h and 1h30-now
    assert math.isclose(a1["online_share"] + a2["online_share"], 1.0)
    assert a1["online_vs_average"] > 1.25 and a2["online_vs_average"] < 0.75
    assert f"online {a1['online_vs_average']:.1f}× the average" in a1["why"]
    assert f"online {a2['online_vs_average']:.1f}× the average" in a2["why"]


def test_two_to_one_online_gives_ratio_two() -> None:
    sc = Scenario(shop(["a1", "a2"]))
    sc.at("0s").online("a1")
    sc.at("1h").online("a2")
    sc.at("2h").inquiry("b1")
    a1, a2 = explain_shop(sc.engine.shop(SHOP), sc.now)["agents"]
    assert a1["online_ms"] == 2 * a2["online_ms"] == 2 * 3_600_000
    assert math.isclose(a1["online_vs_average"], 4 / 3)
    assert math.isclose(a1["online_share"], 2 / 3)
    assert "online 1.3× the average" in a1["why"]


def test_why_names_the_rules_and_context_that_made_a_share() -> None:
    e = explain_shop(_mixed_day().engine.shop(SHOP), T0 + 3 * 3_600_000)
    rows = {a["id"]: a for a in e["agents"]}
    a1 = rows["a1"]
    assert a1["conversion_priority"] and a1["level"] == 5
    assert "chosen by conversion priority" in a1["why"] and "level 5" in a1["why"]
    assert not rows["a3"]["conversion_priority"] and rows["a3"]["weight"] == 2.0
    sticky = [a for a in e["agents"] if a["by_rule"].get("sticky", {}).get("of_agent", 0) >= 0.15]
    assert sticky
    for agent in sticky:
        assert "came back to it (sticky)" in agent["why"]
    assert rows["a1"]["caps"] == {"presale": 2} and rows["a3"]["groups"] == ["aftersale"]
    presale = next(g for g in e["groups"] if g["name"] == "presale")
    assert presale["mode"] == "conversion" and presale["queueing"]
    assert presale["assignments"] == rows["a1"]["assignments"] + rows["a2"]["assignments"]
    assert rows["a1"]["observed_conversion"] is not None
    assert presale["observed_conversion"] is not None


def test_explanation_is_json_and_survives_snapshot_and_restore() -> None:
    sc = _mixed_day()
    original = sc.engine.shop(SHOP)
    e = explain_shop(original, sc.now)
    assert orjson.loads(orjson.dumps(e)) == e
    data = orjson.loads(orjson.dumps(dump_shop(original)))
    assert explain_shop(load_shop(sc.config, data, dedup_capacity=1000), sc.now) == e


def test_snapshot_rows_written_before_the_rule_counts_load_with_reasons_as_rules() -> None:
    sc = _mixed_day()
    data = dump_shop(sc.engine.shop(SHOP))
    for row in data["agents"].values():
        del row["assigned_by_rule"], row["assigned_by_group"]
    restored = load_shop(sc.config, data, dedup_capacity=1000)
    for agent in restored.agents.values():
        assert agent.assigned_by_rule == agent.assigned_by_reason
        assert agent.assigned_by_group == {}


def test_render_table_has_a_line_and_a_why_per_agent() -> None:
    e = explain_shop(_mixed_day().engine.shop(SHOP), T0 + 3 * 3_600_000)
    text = render_table(e)
    lines = text.splitlines()
    assert lines[0].startswith(f"shop {SHOP}: {e['assignments']} buyers given to 4 agents")
    for rule in e["rules"]:
        assert rule in lines[1]
    for agent in e["agents"]:
        assert any(line.startswith(f"{agent['id']} ") for line in lines[3:7])
        assert f"{agent['id']}: {agent['why']}" in lines


def test_shop_without_assignments_explains_with_zero_shares() -> None:
    sc = Scenario(shop(["a1", "a2"]))
    sc.at("0s").online("a1")
    e = explain_shop(sc.engine.shop(SHOP), sc.now + 60_000)
    assert e["assignments"] == 0 and e["rules"] == {}
    assert [a["share"] for a in e["agents"]] == [0.0, 0.0]
    assert [a["why"] for a in e["agents"]] == ["no buyers yet", "no buyers yet (never online)"]
    assert "a2" in render_table(e)


# ------------------------------------------------------------------------------- HTTP


def _service(sc: Scenario) -> Service:
    config = FenliuConfig(
        kafka=KafkaConfig(bootstrap_servers="127.0.0.1:9092"),
        redis=RedisConfig(url="redis://127.0.0.1:6379/0"),
        config_path=Path("fenliu.toml"),
        shop_configs={SHOP: sc.config},
        shop_files={},
    )
    service = Service(config, clock=lambda: sc.now, install_signals=False)
    service.engine = sc.engine  # the state the batches would have built
    held = SimpleNamespace(partition_of={SHOP: 3}, set_aside={}, partitions=4, home=lambda s: 3)
    service.checkpoint = SimpleNamespace(held=held)  # type: ignore[assignment]
    return service


async def _build_views(service: Service) -> None:
    """What `Service._loop` does between batches, without Kafka: build the views asked for."""
    while True:
        if service.views.due():
            views = service.views
            views.build(service.engine, service.checkpoint.held, service.decisions, service.clock())
        await asyncio.sleep(0.02)


async def _get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_http_route_answers_the_local_explanation_and_404_for_unknown_shops() -> None:
    sc = _mixed_day()
    service = _service(sc)
    server = HttpServer(routes(service), "127.0.0.1", 0)
    await server.start()
    loop = asyncio.create_task(_build_views(service))
    try:
        status, body = await _get(server.port, f"/api/shops/{SHOP}/explain")
        assert status == 200
        data = orjson.loads(body)
        assert data["partition"] == 3
        del data["partition"]
        assert data == explain_shop(sc.engine.shop(SHOP), sc.now)
        status, body = await _get(server.port, "/api/shops/nope/explain")
        assert status == 404
        assert orjson.loads(body) == {
            "error": "shop 'nope' is not configured",
            "shop_id": "nope",
            "configured": False,
            "partition": None,
        }
        assert (await _get(server.port, "/api/shops//explain"))[0] == 404
        assert (await _get(server.port, f"/api/shops/{SHOP}/explain", "POST"))[0] == 405
        url = f"http://127.0.0.1:{server.port}"
        fetched = await asyncio.to_thread(fetch, url, SHOP)
        assert fetched["agents"] == data["agents"]
        with pytest.raises(ExplainError, match="shop 'nope' is not configured"):
            await asyncio.to_thread(fetch, url, "nope")
    finally:
        loop.cancel()
        await server.close()


async def test_the_old_explain_path_redirects_to_the_api() -> None:
    """`/shops/{id}/explain` (before the API) answers 308 to `/api/shops/{id}/explain`, so
    scripts that follow redirects keep working."""
    service = _service(_mixed_day())
    server = HttpServer(routes(service), "127.0.0.1", 0)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"GET /shops/a%2Fb/explain?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 308")
        assert b"\r\nLocation: /api/shops/a%2Fb/explain?x=1\r\n" in answer
    finally:
        await server.close()


# -------------------------------------------------------------------------------- CLI


def _simulation_file(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    explanation = explain_shop(_mixed_day().engine.shop(SHOP), T0 + 3 * 3_600_000)
    data = {
        "shop": SHOP,
        "scenario": "steady",
        "policies": {
            "efficiency": {"measures": {"conversion": 0.1}, "explain": explanation},
            "conversion:high": {"measures": {"conversion": 0.2}, "explain": explanation},
        },
    }
    path = tmp_path / "out.json"
    path.write_bytes(orjson.dumps(data))
    return path, explanation


def test_cli_prints_a_table_per_policy_of_a_simulation_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, explanation = _simulation_file(tmp_path)
    assert main(["explain", str(path)]) == 0
    out = capsys.readouterr().out
    assert "== policy efficiency\n" in out and "== policy conversion:high\n" in out
    assert out.count(render_table(explanation)) == 2

    assert main(["explain", str(path), "--policy", "conversion:high"]) == 0
    out = capsys.readouterr().out
    assert out == f"== policy conversion:high\n{render_table(explanation)}"

    assert main(["explain", str(path), "--policy", "efficiency", "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == {"efficiency": explanation}


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["explain"], 2, "give --shop ID"),
        (["explain", "{file}", "--shop", "x"], 2, "a simulation FILE needs neither"),
        (["explain", "--shop", "x", "--policy", "p"], 2, "--policy goes with a simulation FILE"),
        (["explain", "{file}", "--policy", "nope"], 1, "has no policy 'nope'; it has:"),
        (["explain", "{missing}"], 1, "cannot read"),
        (["explain", "{notjson}"], 1, "is not JSON"),
        (["explain", "{noexplain}"], 1, "has no explanation; run `fenliu simulate` with"),
        (["explain", "--url", "http://127.0.0.1:1", "--shop", "x"], 1, "cannot reach"),
    ],
)
def test_cli_errors_are_sentences_with_exit_codes(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    message: str,
) -> None:
    path, _ = _simulation_file(tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "bare.json").write_text('{"policies": {"efficiency": {"measures": {}}}}')
    files = {
        "{file}": str(path),
        "{missing}": str(tmp_path / "missing.json"),
        "{notjson}": str(tmp_path / "bad.json"),
        "{noexplain}": str(tmp_path / "bare.json"),
    }
    assert main([files.get(arg, arg) for arg in argv]) == code
    err = capsys.readouterr().err
    assert err.startswith("fenliu explain: ") and message in err


def test_cli_reads_a_single_explanation_as_the_daemon_answers_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, explanation = _simulation_file(tmp_path)
    path = tmp_path / "one.json"
    path.write_bytes(orjson.dumps({**explanation, "partition": 0}))
    assert main(["explain", str(path)]) == 0
    assert capsys.readouterr().out == render_table(explanation)


def test_each_agent_shows_the_rate_routing_used_and_where_it_came_from() -> None:
    """Issue 15, item 6: an analytics figure as given; else observed, with its count,
    shrunk toward the group mean as routing uses it; nothing outside conversion mode."""
    sc = _mixed_day()
    sc.stats("a2", 0.31)
    engine = sc.engine.shop(SHOP)
    rows = {a["id"]: a for a in explain_shop(engine, sc.now)["agents"]}
    told, seen = rows["a2"]["routing_rate"], rows["a1"]["routing_rate"]
    assert told["source"] == "agent_stats" and told["rate"] == 0.31
    assert seen["source"] == "observed" and seen["group"] == "presale"
    a1 = engine.agents["a1"]
    assert (
        (seen["sessions"], seen["converted_sessions"])
        == (
            a1.sessions_total,
            a1.converted_sessions,
        )
        != (0, 0)
    )
    m, mean = seen["prior_strength"], seen["group_mean"]
    assert seen["rate"] == pytest.approx(
        (a1.converted_sessions + m * mean) / (a1.sessions_total + m)
    )
    assert seen["rate"] == engine.candidate("presale").rate(a1)  # what routing ranks by
    assert rows["a3"]["routing_rate"] is None  # aftersale is efficiency
    table = render_table(explain_shop(engine, sc.now))
    assert "31.0% a" in table and " o " in table
    words = rows["a1"]["why"] + rows["a2"]["why"]
    assert "analytics figure 31%" in words or "observed" in words


def test_the_explanation_matches_its_json_schema() -> None:
    from jsonschema import Draft202012Validator

    schema = orjson.loads((Path(__file__).parents[2] / "docs/api/explain.schema.json").read_bytes())
    sc = _mixed_day()
    e = explain_shop(sc.engine.shop(SHOP), sc.now)
    Draft202012Validator(schema).validate({**e, "partition": None})
