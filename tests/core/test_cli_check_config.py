"""`fenliu check-config PATH`: a summary line per shop and exit 0, or file/key lines and 1."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "fenliu.toml"

BIG_LINE = (
    "shop big: 30 agents, 4 groups (vip, presale, aftersale, general), mode efficiency, "
    "queueing on (scope shop, default cap 5)"
)
PRESALE_LINE = (
    "shop presale: 14 agents, 2 groups (presale, aftersale), mode efficiency, "
    "queueing on (scope shop, default cap 5)"
)
SMALL_LINE = "shop small: 3 agents, 1 group (all), mode average, queueing off"


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A copy of the example config with a bad weight, an unknown agent and a bad mode."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    shops = tmp_path / "config" / "shops"
    big = (shops / "big.toml").read_text(encoding="utf-8")
    big = big.replace('id = "pre-05"', 'id = "pre-05"\nweight = 0', 1)
    big = big.replace('"gen-04", "pre-11"', '"gen-04", "gen-99", "pre-11"', 1)
    (shops / "big.toml").write_text(big, encoding="utf-8")
    small = (shops / "small.toml").read_text(encoding="utf-8")
    (shops / "small.toml").write_text(small.replace('"average"', '"fair"'), encoding="utf-8")
    return tmp_path / "config" / "fenliu.toml"


def test_valid_config_prints_one_summary_line_per_shop_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check-config", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [BIG_LINE, PRESALE_LINE, SMALL_LINE]
    assert err == ""


def test_a_shop_with_priority_aging_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(REPO / "config", tmp_path / "config")
    presale = tmp_path / "config" / "shops" / "presale.toml"
    text = presale.read_text(encoding="utf-8")
    presale.write_text(text.replace("aging = 0", 'aging = "90s"'), encoding="utf-8")
    assert main(["check-config", str(tmp_path / "config" / "fenliu.toml")]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[1] == PRESALE_LINE + ", priority aging 1m30s"


def test_a_shop_with_its_own_reply_deadline_or_reassign_after_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reply deadline of its own and `reassign_after` (contract §3.6) are named."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    presale = tmp_path / "config" / "shops" / "presale.toml"
    text = presale.read_text(encoding="utf-8").replace('deadline = "3m"', 'deadline = "2m"')
    presale.write_text(text.replace("reassign_after = 0", 'reassign_after = "100s"'))
    assert main(["check-config", str(tmp_path / "config" / "fenliu.toml")]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[1] == (
        PRESALE_LINE + ", reply deadline 2m, unanswered first messages move after 1m40s"
    )


def test_broken_config_prints_file_and_key_lines_and_exits_1(
    broken: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(broken)]) == 1
    out, err = capsys.readouterr()
    shops = broken.parent / "shops"
    assert out == ""
    assert err.splitlines() == [
        f"{shops / 'big.toml'}: agents[8].weight: must be greater than 0 (got 0)",
        f"{shops / 'big.toml'}: groups[3].agents[4]: agent 'gen-99' is not configured in "
        "[[agents]]",
        f"{shops / 'small.toml'}: mode: must be one of 'average', 'weighted', 'efficiency' or "
        "'conversion' (got 'fair')",
    ]


def test_missing_config_file_is_one_line_and_exit_1_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(tmp_path / "fenliu.toml")]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"{tmp_path / 'fenliu.toml'}: (file): file not found\n")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )


def test_real_process_exits_0_with_summary_for_the_example_config() -> None:
    result = _run("check-config", "config/fenliu.toml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [BIG_LINE, PRESALE_LINE, SMALL_LINE]
    assert result.stderr == ""


def test_real_process_exits_1_with_problem_lines_for_a_broken_copy(broken: Path) -> None:
    result = _run("check-config", str(broken))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 3
    assert (
        lines[0]
        == f"{broken.parent / 'shops' / 'big.toml'}: agents[8].weight: must be greater than 0 "
        "(got 0)"
    )
    assert "Traceback" not in result.stderr
