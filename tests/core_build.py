"""A pytest plugin: the suite refuses to start on a compiled core older than its source.

Python loads a compiled module in preference to its `.py` even after the source changed,
and `import daemon` does not look (docs/architecture.md, The compiled core): after an edit
to daemon/core without `make compile`, the suite would test the old code. pyproject.toml's
addopts load this plugin (`-p tests.core_build`), so every pytest run checks, `make test`
and `make check` included.
"""

from __future__ import annotations

import pytest

from daemon.tools.compile import problem


def pytest_configure() -> None:
    """Stop before collecting anything when the build in daemon/core is stale or partial."""
    wrong = problem()
    if wrong:
        raise pytest.UsageError(wrong)
