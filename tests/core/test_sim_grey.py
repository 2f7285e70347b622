"""Grey tests in the lab (`fenliu simulate --experiment`, daemon/lab/grey.py; issue 27 item 5):
the routing core runs the experiment, the lab reports its figures beside the world's truth,
and the lab-only harmful arm cannot come from a shop file."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from daemon.cli import main
from daemon.config import ConfigError, load_shop_file
from daemon.core.config import ShopConfig
from daemon.lab.grey import ONE_SLOW_AGENT, LabExperiment, lab_experiment
from daemon.lab.policy import parse_policy
from daemon.lab.runner import SimRun, simulate
from daemon.lab.scenarios import HOUR_MS, find_scenario
from daemon.lab.world import new_agents

SHOPS = Path(__file__).resolve().parents[2] / "config" / "shops"
PRESALE = SHOPS / "presale.toml"
RAILS = {"p95_wait": "+20%", "replies_within_deadline": "-3pp"}


@pytest.fixture(scope="module")
def presale() -> ShopConfig:
    return load_shop_file(PRESALE)


def grey_run(shop: ShopConfig, spec: LabExperiment, scale: float, days: int = 1) -> SimRun:
    policy = parse_policy("as-configured")
    return simulate(shop, "steady", seed=1, policy=policy, scale=scale, days=days, experiment=spec)


def test_simulate_with_an_experiment_reports_both_arms_with_intervals_and_the_true_uplift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "grey.json"
    code = main(
        ["simulate", "--shop", str(PRESALE), "--scenario", "steady", "--scale", "0.25",
         "--experiment", "control=efficiency,treatment=conversion:high",
         "--guardrails", "p95_wait=+20%,replies_within_deadline=-3pp", "--json", str(out)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "grey test lab" in printed and "true uplift" in printed and "conversion:high" in printed
    doc = orjson.loads(out.read_bytes())
    assert list(doc["policies"]) == ["grey test lab"] and doc["references"] == {}
    grey = doc["experiment"]
    assert grey["guardrails"] == RAILS and grey["confidence"] == 0.95
    control, treatment = grey["arms"]
    assert (control["arm"], control["policy"]) == ("control", "efficiency")
    assert (treatment["arm"], treatment["policy"]) == ("treatment", "conversion:high")
    for arm in (control, treatment):
        assert arm["sessions"] > 100 and arm["lab_sessions"] == arm["sessions"]
        conv = arm["conversion"]
        assert 0 <= conv["low"] <= conv["value"] <= conv["high"] <= 1
        assert 0 < arm["true_due"] <= arm["true"] < 1
        reply = arm["replies_within_deadline"]
        assert reply["low"] <= reply["value"] <= reply["high"]
    up = treatment["uplift"]
    assert up["low"] <= up["points"] <= up["high"]
    assert up["points"] == pytest.approx(
        treatment["converted"] / treatment["sessions"] - control["converted"] / control["sessions"],
        abs=1e-5,
    )
    assert treatment["true_uplift"] == pytest.approx(treatment["true"] - control["true"], abs=2e-5)
    assert control["uplift"] is None and control["true_uplift"] is None
    # a look every simulated hour and one at the end, the last one the report's
    looks = grey["looks"]
    assert len(looks) == 25
    assert [look["at"] - looks[0]["at"] for look in looks] == [h * HOUR_MS for h in range(25)]
    last = looks[-1]["uplift"]["treatment"]
    assert (last["low"], last["high"]) == (up["low"], up["high"])
    assert last["true_due"] == treatment["true_uplift_due"]


def test_arms_split_about_as_configured_and_the_lab_counts_what_the_core_counts(
    presale: ShopConfig,
) -> None:
    spec = LabExperiment("split-check", {"control": "efficiency", "treatment": "average"},
                         {"control": 80, "treatment": 20})  # fmt: skip
    run = grey_run(presale, spec, 0.5)
    assert run.grey is not None
    exp = run.grey.experiment()
    assert exp.config.split == {"control": 80, "treatment": 20}
    buyers = {arm: f.buyers for arm, f in exp.figures.items()}
    assert 0.16 <= buyers["treatment"] / sum(buyers.values()) <= 0.24
    assert {arm: f.sessions for arm, f in exp.figures.items()} == run.grey.sessions
    # each served inquiry's arm is its buyer's, so the lab's count per arm is the core's
    served = [r for r in run.trace.inquiries if r.reason in {"routed", "dequeued", "sticky",
                                                             "repeat_entry"}]  # fmt: skip
    per_arm = {"control": 0, "treatment": 0}
    for record in served:
        per_arm[exp.arm_of(record.buyer_id)] += 1
    assert per_arm == run.grey.sessions


def test_without_an_experiment_the_run_has_no_grey_watch(presale: ShopConfig) -> None:
    run = simulate(presale, "steady", seed=1, policy=parse_policy("efficiency"), scale=0.1)
    assert run.grey is None and run.config.experiment is None


def test_the_harmful_lab_arm_hands_its_buyers_to_one_slow_agent_until_a_guardrail_stops_it(
    presale: ShopConfig,
) -> None:
    """`one-slow-agent`: seed 1, one ordinary day at the shop's own load. The core knows only
    efficiency; the lab moves each new session of the arm to the slowest agent online, the
    replies guardrail stops the arm within the day, and no buyer is handed over after."""
    spec = lab_experiment(presale, f"control=efficiency,treatment={ONE_SLOW_AGENT}", None, None)
    assert spec is not None
    spec = LabExperiment(spec.name, spec.arms, spec.split, RAILS)
    run = grey_run(presale, spec, 1.0)
    assert run.grey is not None
    exp = run.grey.experiment()
    assert exp.config.arms == {"control": "efficiency", "treatment": "efficiency"}
    stop = exp.stopped["treatment"]
    assert stop.guardrail == "replies_within_deadline"
    assert run.trace.start < stop.at < run.trace.end
    moves = [(r, m) for r in run.trace.inquiries for m in r.moves if m[3] == "transfer"]
    assert moves and all(exp.arm_of(r.buyer_id) == "treatment" for r, _ in moves)
    assert all(at <= stop.at for _, (at, _, _, _) in moves)
    pace = {a.id: a.reply_median_ms for a in new_agents(presale, find_scenario("steady"), 1)}
    for _, (at, _, to, _) in moves:  # the slowest of the agents online then
        online = [a.agent_id for a in run.trace.agents.values()
                  if any(start <= at < end for start, end in a.online)]  # fmt: skip
        assert to == max(online, key=pace.__getitem__)
    summary = run.grey.summary()
    assert summary["arms"][1]["lab_policy"] == ONE_SLOW_AGENT
    assert summary["arms"][1]["policy"] == "efficiency"


def test_the_harmful_lab_arm_is_never_reachable_from_a_shop_file(tmp_path: Path) -> None:
    shop = tmp_path / "presale.toml"
    shop.write_text(
        PRESALE.read_text()
        + '\n[experiment]\nname = "harm"\n'
        + f'arms = {{ control = "efficiency", treatment = "{ONE_SLOW_AGENT}" }}\n'
        + "split = { control = 50, treatment = 50 }\n"
    )
    with pytest.raises(ConfigError) as refused:
        load_shop_file(shop)
    assert any(ONE_SLOW_AGENT in str(problem) for problem in refused.value.problems)


def test_a_shop_files_own_experiment_runs_without_mode_and_is_left_out_with_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shop = tmp_path / "presale.toml"
    shop.write_text(
        PRESALE.read_text()
        + '\n[experiment]\nname = "conv-high-2026-12"\n'
        + 'arms = { control = "efficiency", treatment = "conversion:high" }\n'
        + "split = { control = 70, treatment = 30 }\n"
        + 'guardrails = { p95_wait = "+20%" }\n'
    )
    base = ["simulate", "--shop", str(shop), "--scenario", "steady", "--scale", "0.1"]
    assert main([*base, "--json", str(tmp_path / "own.json")]) == 0
    grey = orjson.loads((tmp_path / "own.json").read_bytes())["experiment"]
    assert grey["name"] == "conv-high-2026-12" and grey["guardrails"] == {"p95_wait": "+20%"}
    assert [a["split"] for a in grey["arms"]] == [70, 30]
    # --experiment keeps the file's name and split, and --guardrails replaces its guardrails
    assert main([*base, "--experiment", "control=efficiency,treatment=conversion:high",
                 "--guardrails", "none", "--json", str(tmp_path / "arg.json")]) == 0  # fmt: skip
    grey = orjson.loads((tmp_path / "arg.json").read_bytes())["experiment"]
    assert (grey["name"], grey["guardrails"]) == ("conv-high-2026-12", {})
    assert [a["split"] for a in grey["arms"]] == [70, 30]
    capsys.readouterr()
    assert main([*base, "--mode", "efficiency", "--json", str(tmp_path / "mode.json")]) == 0
    assert "[experiment] is left out" in capsys.readouterr().err
    doc = orjson.loads((tmp_path / "mode.json").read_bytes())
    assert doc["experiment"] is None and list(doc["policies"]) == ["efficiency"]


def test_days_play_the_day_again_and_are_looked_at_every_hour(presale: ShopConfig) -> None:
    spec = lab_experiment(presale, "control=efficiency,treatment=conversion:mid", None, None)
    assert spec is not None
    run = grey_run(presale, spec, 0.1, days=2)
    assert run.grey is not None and len(run.grey.looks) == 49
    assert run.trace.end - run.trace.start == 48 * HOUR_MS


def test_arguments_are_parsed_with_sentences(presale: ShopConfig) -> None:
    three = lab_experiment(presale, "control=efficiency,a=average,b=weighted", None, None)
    assert three is not None and three.split == {"control": 34, "a": 33, "b": 33}
    assert three.guardrails == {} and three.name == "lab"
    assert lab_experiment(presale, None, None, None) is None
    bad = {
        ("control=efficiency", None, None): "an arm named 'control' and at least one other",
        ("control=efficiency,t=fast", None, None): "'fast' is not a policy",
        ("control=efficiency,t", None, None): "'t' is not ARM=POLICY",
        ("control=efficiency,t=average", "control=50", None): "the arms are",
        ("control=efficiency,t=average", "control=50,t=x", None): "not a whole percent",
        ("control=efficiency,t=average", None, "p95_wait=+20"): r"is not like '\+20%'",
        ("control=efficiency,t=average", None, "latency=+20%"): "unknown guardrail",
        (None, "control=50,t=50", None): "go with --experiment",
    }
    for (arms, split, rails), sentence in bad.items():
        with pytest.raises(ValueError, match=sentence):
            lab_experiment(presale, arms, split, rails)


def test_simulate_refuses_an_experiment_with_modes(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["simulate", "--shop", str(PRESALE), "--scenario", "steady", "--mode", "efficiency",
         "--experiment", "control=efficiency,treatment=average"]
    )  # fmt: skip
    assert code == 2
    assert "leave out --mode" in capsys.readouterr().err
