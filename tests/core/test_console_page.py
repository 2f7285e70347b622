"""The console's page as the package ships it (daemon/console/index.html): self-contained,
and built so that no value from the API can become markup. Its behaviour is tested in a
real browser against a real daemon (tests/system/test_console.py)."""

from __future__ import annotations

import re
from importlib import resources

FILES = resources.files("daemon.console")
PAGE = FILES.joinpath("index.html").read_text(encoding="utf-8")
UNAUTHORIZED = FILES.joinpath("unauthorized.html").read_text(encoding="utf-8")


def test_the_page_is_shipped_and_loads_nothing_from_elsewhere() -> None:
    """One file, no build step: no external script, style sheet or font (it must work on an
    operator's network with no internet), and the API is called by relative paths."""
    assert PAGE.startswith("<!doctype html>")
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"(https?:)?//", PAGE)
    assert "@import" not in PAGE and "url(" not in PAGE
    assert 'api("api/shops")' in PAGE and "fetch(path" in PAGE


def test_values_reach_the_page_as_text_only() -> None:
    """No HTML parsing of data anywhere: no innerHTML and its relatives, no eval."""
    for page in (PAGE, UNAUTHORIZED):
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in page, sink
        assert "new Function" not in page


def test_the_token_is_kept_for_the_tab_and_taken_out_of_the_address() -> None:
    """`?token=` goes to sessionStorage (never localStorage), leaves the address bar by
    history.replaceState, and is sent as a Bearer header; no referrer carries the address."""
    assert "sessionStorage.setItem(TOKEN_KEY" in PAGE and "localStorage" not in PAGE
    assert 'url.searchParams.delete("token")' in PAGE and "history.replaceState" in PAGE
    assert "Authorization = `Bearer ${token}`" in PAGE
    assert '<meta name="referrer" content="no-referrer">' in PAGE


def test_the_grey_test_panel_reads_the_shop_view_and_shows_only_while_one_runs() -> None:
    """contract §3.7: the panel draws `experiment` of /api/shops/{id} (no other call), is
    hidden while it is null, and marks an arm a guardrail stopped with the reason (in a real
    browser: tests/system/test_experiment_looks.py)."""
    assert '<section class="card" id="experiment-card" hidden>' in PAGE
    assert "state.view ? state.view.experiment : null" in PAGE
    assert '$("experiment-card").hidden = !exp;' in PAGE
    assert '"已被护栏停止 stopped by guardrail"' in PAGE and "stop.why" in PAGE
    assert "/experiment" not in PAGE
