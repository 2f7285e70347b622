"""`[http] token` (contract §5): /api/* and the console need it, compared in constant time;
/metrics, /healthz and /readyz stay open; it never reaches a log. A real `Service` (never
started) behind the real HTTP stack, on a real socket."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from daemon.config import FenliuConfig, HttpConfig, KafkaConfig, RedisConfig
from daemon.service.api import token_guard
from daemon.service.control_plane import routes
from daemon.service.http import HttpServer
from daemon.service.run import Service
from daemon.tools.explain import ExplainError, fetch

TOKEN = "tok-hunter2-Zq9"


@pytest.fixture
async def port() -> AsyncIterator[int]:
    config = FenliuConfig(
        kafka=KafkaConfig(bootstrap_servers="127.0.0.1:9092"),
        redis=RedisConfig(url="redis://127.0.0.1:6379/0"),
        http=HttpConfig(listen="0.0.0.0:0", token=TOKEN),  # type: ignore[arg-type]
        config_path=Path("fenliu.toml"),
        shop_configs={},
        shop_files={},
    )
    service = Service(config, install_signals=False)

    async def build_views() -> None:  # what the loop does between batches
        while True:
            if service.views.due():
                views = service.views
                views.build(service.engine, service.checkpoint.held, service.decisions, 0)
            await asyncio.sleep(0.02)

    token = config.http.token.get_secret_value()
    http = HttpServer(routes(service), "127.0.0.1", 0, middlewares=[token_guard(token)])
    await http.start()
    loop = asyncio.create_task(build_views())
    try:
        yield http.port
    finally:
        loop.cancel()
        await http.close()


async def _get(port: int, path: str, *headers: str) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = "".join(f"{h}\r\n" for h in headers)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{lines}\r\n".encode())
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *fields = head.decode().split("\r\n")
    found = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
    return int(status_line.split()[1]), found, body


async def test_the_api_and_the_console_need_the_token(port: int) -> None:
    for path, headers in [
        ("/api/shops", ()),
        ("/api/shops", ("Authorization: Bearer wrong",)),
        ("/api/shops", (f"Authorization: Basic {TOKEN}",)),
        (f"/api/shops?token={TOKEN}", ()),  # ?token= is for the console's address only
        ("/api/shops/s1/explain", ()),
        ("/", ()),
        ("/?token=wrong", ()),
        (f"/?token={TOKEN}x", ()),
    ]:
        status, fields, body = await _get(port, path, *headers)
        assert status == 401, path
        assert fields["www-authenticate"].startswith("Bearer")
        assert "token" in orjson.loads(body)["error"]
        assert TOKEN.encode() not in body


async def test_the_right_token_opens_them(port: int) -> None:
    status, _, body = await _get(port, "/api/shops", f"Authorization: Bearer {TOKEN}")
    assert (status, orjson.loads(body)) == (200, {"shops": []})
    status, _, body = await _get(port, "/api/shops/s1", f"authorization: bearer {TOKEN}")
    assert status == 404 and orjson.loads(body)["shop_id"] == "s1"
    status, _, body = await _get(port, f"/?token={TOKEN}")
    assert status == 200 and b"<html" in body
    assert (await _get(port, "/", f"Authorization: Bearer {TOKEN}"))[0] == 200


async def test_metrics_and_probes_stay_open(port: int) -> None:
    assert (await _get(port, "/metrics"))[0] == 200
    assert (await _get(port, "/healthz"))[0] == 200
    assert (await _get(port, "/readyz"))[0] == 503  # open, and not ready: never started
    assert (await _get(port, "/shops/s1/explain"))[0] == 308  # to the API, which needs it


async def test_the_token_never_reaches_a_log(port: int, caplog: pytest.LogCaptureFixture) -> None:
    """Neither the daemon's structlog lines nor any library's log records (aiohttp's access
    and server logs included) carry the token, given right, wrong, or in a bad request."""
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        await _get(port, f"/?token={TOKEN}")
        await _get(port, "/api/shops", f"Authorization: Bearer {TOKEN}")
        await _get(port, "/api/shops", f"Authorization: Bearer {TOKEN}-wrong")
        await _get(port, "/healthz", f"Authorization: Bearer {TOKEN}{'x' * 9000}")  # too long
    assert TOKEN not in repr(logs)
    assert all(TOKEN not in record.getMessage() for record in caplog.records)
    assert all(TOKEN not in repr(record.exc_info) for record in caplog.records)


async def test_fenliu_explain_sends_the_token(port: int) -> None:
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(ExplainError, match=r"needs the \[http\] token"):
        await asyncio.to_thread(fetch, url, "s1")
    with pytest.raises(ExplainError, match="shop 's1' is not configured"):  # past the guard
        await asyncio.to_thread(fetch, url, "s1", token=TOKEN)
