"""The read-only JSON API and the console's address (contract §8), and the `[http] token`.

    GET /api/shops                 {"shops": [summary, ...]} of the shops served here, by id
    GET /api/shops/{id}            agents, queues and the last decisions of one shop
    GET /api/shops/{id}/experiment its grey tests (contract §3.7): the running one's report
                                   and the finished ones', as `fenliu experiment report`
    GET /api/shops/{id}/explain    what `fenliu explain --shop ID` prints, as JSON
    GET /shops/{id}/explain        308 to the address above (the path before the API)
    GET /                          the console (daemon/console/index.html)

Shapes: daemon.core.view, daemon.service.views and the JSON Schemas in docs/api/. Handlers
render the loop's latest view (daemon.service.views) and never read the engine. A shop this
instance does not serve is 404 with `{"error", "shop_id", "configured", "partition"}`
(`partition`: the input partition the shop belongs on, so the instance owning it can be
found; null when not configured or not known yet); a shop set aside (quarantined, or
waiting for its Redis node) is 503 with the same fields and its `cause`.

With a non-empty `[http] token`, /api/* and / need it (`token_guard`): `Authorization:
Bearer <token>`, or `?token=<token>` on the console's address only; compared in constant
time, 401 with `WWW-Authenticate: Bearer` otherwise: a JSON error, or for a browser asking
for `/` the console's unauthorized.html (it says what is needed, and brings back in a tab
that holds the token, so a reload of the console works). /metrics, /healthz, /readyz and
/-/reload (this machine only) stay open; the old explain path redirects without it.
"""

from __future__ import annotations

import hmac
from importlib import resources
from typing import Any, Protocol
from urllib.parse import quote

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from daemon.config import FenliuConfig
from daemon.service.checkpoint import Checkpoint
from daemon.service.http import json_error
from daemon.service.views import LIST, View, Views


class Viewed(Protocol):
    """What the API reads of the running service (`daemon.service.run.Service` is one)."""

    @property
    def views(self) -> Views: ...
    @property
    def config(self) -> FenliuConfig: ...
    @property
    def checkpoint(self) -> Checkpoint: ...


def _dumps(data: Any) -> str:
    return orjson.dumps(data).decode()


def _not_served(service: Viewed, view: View | None, shop_id: str) -> web.Response | None:
    """The answer for a shop this view cannot show, or None."""
    if view is None:
        return json_error(503, "no view yet: the daemon is starting or recovering")
    config = service.config.shop_configs
    checkpoint = service.checkpoint
    where = {
        "shop_id": shop_id,
        "configured": shop_id in config,
        "partition": checkpoint.held.home(shop_id)
        if shop_id in config and checkpoint.held.partitions
        else None,
    }
    if shop_id in view.set_aside:
        cause = view.set_aside[shop_id]
        return json_error(503, f"shop {shop_id!r} is set aside: {cause}", **where, cause=cause)
    if shop_id not in view.owned:
        if shop_id not in config:
            return json_error(404, f"shop {shop_id!r} is not configured", **where)
        text = f"shop {shop_id!r} is not owned by this instance: ask the owner of partition"
        return json_error(404, f"{text} {where['partition']}", **where)
    return None


def token_guard(token: str) -> Middleware:
    """Require `token` on /api/* and / (module docstring); nothing when it is empty."""
    expected = token.encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if expected and (path == "/" or path.startswith("/api/")):
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" and path == "/":
                given = request.query.get("token", "")
            elif scheme.lower() != "bearer":
                given = ""
            if not hmac.compare_digest(given.strip().encode(), expected):
                answer = json_error(
                    401,
                    "this address needs the [http] token: `Authorization: Bearer <token>`"
                    + (" or ?token=<token>" if path == "/" else ""),
                )
                if path == "/" and "text/html" in request.headers.get("Accept", ""):
                    answer = _html(console_page("unauthorized.html"), status=401)  # a browser
                answer.headers["WWW-Authenticate"] = 'Bearer realm="fenliu"'
                return answer
        return await handler(request)

    return guard


def api_routes(service: Viewed) -> list[web.RouteDef]:
    """The routes of the JSON API, the old explain path and the console."""
    views = service.views

    def shop_answer(kind: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            shop_id = request.match_info["id"]
            view = await views.get((kind, shop_id))
            refused = _not_served(service, view, shop_id)
            if refused is not None:
                return refused
            assert view is not None
            data = view.part(kind).get(shop_id)
            if data is None:
                return json_error(503, "no view of this shop yet: ask again in a second")
            return web.json_response(data, dumps=_dumps)

        return handler

    async def shops(request: web.Request) -> web.StreamResponse:
        view = await views.get(LIST)
        if view is None or view.summaries is None:
            return json_error(503, "no view yet: the daemon is starting or recovering")
        return web.json_response({"shops": view.summaries}, dumps=_dumps)

    async def old_explain(request: web.Request) -> web.StreamResponse:
        target = f"/api/shops/{quote(request.match_info['id'], safe='')}/explain"
        query = request.query_string
        raise web.HTTPPermanentRedirect(f"{target}?{query}" if query else target)

    async def console(request: web.Request) -> web.StreamResponse:
        return _html(console_page())

    return [
        web.get("/api/shops", shops),
        web.get("/api/shops/{id}", shop_answer("shop")),
        web.get("/api/shops/{id}/explain", shop_answer("explain")),
        web.get("/api/shops/{id}/experiment", shop_answer("experiment")),
        web.get("/shops/{id}/explain", old_explain),
        web.get("/", console),
    ]


def console_page(name: str = "index.html") -> bytes:
    """A page of the console (daemon/console), as the package ships it: the console, or
    what a browser is shown at its address without the token (unauthorized.html)."""
    return resources.files("daemon.console").joinpath(name).read_bytes()


def _html(body: bytes, status: int = 200) -> web.Response:
    return web.Response(status=status, body=body, content_type="text/html", charset="utf-8")
