"""Where people look at a grey test (contract §3.7), the parts that need no Redis: the text of
`fenliu experiment report`, its usage errors, and the log line of an arm a guardrail
stopped (daemon.service.record_log.ArmStops). The report read from a real Redis is
tests/integration/test_experiment_report.py's; all of it in a real daemon,
tests/system/test_experiment_looks.py's."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.cli import main
from daemon.core.view import experiments_view
from daemon.service.logs import get_logger
from daemon.service.record_log import ArmStops
from daemon.tools.experiment import render
from tests.grey_shop import grey_scenario
from tests.scenario import SHOP

LAST = "2023-11-14 22:20:39 UTC"  # the scenario's last event (tests/grey_shop.py)


def test_the_report_prints_a_table_per_experiment_and_why_an_arm_stopped() -> None:
    sc = grey_scenario()
    text = render(experiments_view(SHOP, sc.engine.shop(SHOP).state.experiments, sc.now))
    head, running, finished, method = _parts(text)
    assert head == f"shop {SHOP}: 2 experiment(s), as of its last checkpoint ({LAST})"
    assert running[0] == "experiment t1 (running): started 2023-11-14 22:14:20 UTC"
    assert running[1] == "  guardrails: replies_within_deadline -3pp"
    columns = running[3].split()
    assert columns[:5] == ["arm", "policy", "split", "buyers", "sessions"]
    assert columns[-1] == "status"
    control, treatment = running[4], running[5]
    assert control.split()[:5] == ["control", "efficiency", "50%", "60", "60"]
    assert "10.0% [0.0, 27.5]" in control and control.endswith("running")
    assert "5.0% [0.0, 16.9]" in treatment and "-5.0 [-30.8, +20.8] (-50%)" in treatment
    assert "0 s [0, ∞]" in treatment and "0.0% [0.0, 5.1]" in treatment
    assert treatment.endswith("stopped")
    assert running[7].startswith(
        "  treatment stopped by guardrail replies_within_deadline at 2023-11-14 22:19:59 UTC"
    )
    assert running[7].endswith("worse than -3pp with 95% confidence")
    assert finished[0] == (
        "experiment t0 (finished): started 2023-11-14 22:13:20 UTC, ended 2023-11-14 22:14:20 UTC"
    )
    assert all(row.endswith("ended") for row in finished[4:6])
    assert method.startswith("Intervals: always-valid 95% intervals")


def _parts(text: str) -> tuple[str, list[str], list[str], str]:
    """The report's heading, its two experiments' lines, and its closing line."""
    blocks = text.split("\n\n")
    head, method = blocks[0], blocks[-1]
    body = "\n\n".join(blocks[1:-1]).split("\n\nexperiment ")
    running = body[0].split("\n")
    finished = ("experiment " + body[1]).split("\n")
    return head, running, finished, method


@pytest.mark.parametrize(
    "args",
    [
        ["experiment", "report", "--shop", "s1"],  # no --config
        ["experiment", "report", "--config", "fenliu.toml"],  # no --shop
        ["experiment"],  # no action
    ],
)
def test_missing_arguments_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert "required" in capsys.readouterr().err


def test_an_invalid_configuration_exits_2_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "fenliu.toml"
    config.write_text('[kafka]\nbootstrap_servers = "127.0.0.1:9092"\n[redis]\nurl = 5\n')
    assert main(["experiment", "report", "--config", str(config), "--shop", "s1"]) == 2
    assert "redis.url" in capsys.readouterr().err


def test_an_arm_a_guardrail_stopped_is_logged_once_as_a_warning() -> None:
    """One `experiment_arm_stopped` warning naming shop, experiment, arm, policy, guardrail
    and the reason; once only; a shop not served here has its stops dropped, not logged."""
    sc = grey_scenario()
    stops = ArmStops(get_logger())
    with capture_logs() as logs:
        assert stops.log_new(sc.engine, lambda shop_id: True) == 1
        assert stops.log_new(sc.engine, lambda shop_id: True) == 0
    (line,) = logs
    exp = sc.engine.shop(SHOP).state.experiments.running
    assert exp is not None
    assert line == {
        "event": "experiment_arm_stopped", "log_level": "warning", "shop_id": SHOP,
        "experiment": "t1", "arm": "treatment", "policy": "average",
        "guardrail": "replies_within_deadline", "reason": exp.stopped["treatment"].why,
        "at": exp.stopped["treatment"].at,
    }  # fmt: skip
    elsewhere = grey_scenario()
    with capture_logs() as logs:
        assert stops.log_new(elsewhere.engine, lambda shop_id: False) == 0
        assert stops.log_new(elsewhere.engine, lambda shop_id: True) == 0
    assert logs == []
