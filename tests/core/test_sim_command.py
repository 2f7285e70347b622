"""`fenliu simulate` end to end (in-process): JSON, report, explain, determinism, errors."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from daemon.cli import main

BIG = Path(__file__).resolve().parents[2] / "config" / "shops" / "big.toml"


def simulate(tmp: Path, name: str, *extra: str) -> dict:
    out = tmp / f"{name}.json"
    code = main(
        ["simulate", "--shop", str(BIG), "--scenario", "steady", "--scale", "0.25",
         "--mode", "efficiency", "--mode", "conversion:high", "--json", str(out), *extra]
    )  # fmt: skip
    assert code == 0
    return orjson.loads(out.read_bytes())


def test_same_seed_same_json_and_another_seed_differs(tmp_path: Path) -> None:
    first, again = simulate(tmp_path, "a"), simulate(tmp_path, "b")
    assert first == again
    other = simulate(tmp_path, "c", "--seed", "2")
    assert (
        other["policies"]["efficiency"]["measures"] != first["policies"]["efficiency"]["measures"]
    )


def test_policies_share_buyers_and_the_document_has_every_part(tmp_path: Path) -> None:
    doc = simulate(tmp_path, "doc")
    assert (doc["shop"], doc["scenario"], doc["seed"]) == ("big", "steady", 1)
    policies = doc["policies"]
    assert list(policies) == ["efficiency", "conversion:high"]
    # the same buyers arrive (tests/core/test_sim_runner.py checks them one by one); only the
    # returns of buyers whose chat went differently may differ
    counts = [policies[p]["inquiries"] for p in policies]
    assert min(counts) > 100 and max(counts) - min(counts) <= 0.02 * max(counts)
    for policy in policies.values():
        assert set(doc["headline_keys"]) <= set(policy["measures"]["headline"])
        shares = sum(a["share"] for a in policy["explain"]["agents"])
        assert shares == pytest.approx(1.0)


def test_report_writes_a_page_and_its_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    simulate(tmp_path, "r", "--report", str(tmp_path / "report"), "--explain")
    page = (tmp_path / "report" / "index.html").read_text()
    for png in ("queue", "shares", "tradeoff", "estimates", "explain"):
        image = tmp_path / "report" / f"{png}.png"
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f'src="{png}.png"' in page
    assert "conversion:high" in page
    printed = capsys.readouterr().out
    assert "== policy efficiency" in printed and "pre-01" in printed


def test_explain_prints_the_table_of_a_simulation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    simulate(tmp_path, "e")
    capsys.readouterr()
    assert main(["explain", str(tmp_path / "e.json"), "--policy", "conversion:high"]) == 0
    table = capsys.readouterr().out
    assert "pre-01" in table and "routed/conversion" in table


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--scenario", "steady", "--mode", "fastest"], "not a mode"),
        (["--scenario", "steady", "--mode", "nogroup=average"], "has no group"),
        (["--scenario", "steady", "--mode", "average", "--mode", "average"], "different"),
    ],
)
def test_bad_arguments_are_refused_with_a_sentence(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--shop", str(BIG), *args]) == 2
    assert says in capsys.readouterr().err


def test_oracle_share_per_policy_against_efficiency_and_the_oracle(tmp_path: Path) -> None:
    doc = simulate(tmp_path, "oracle", "--mode", "presale=conversion:high", "--mode", "oracle")
    policies = doc["policies"]
    shares = {name: p["measures"]["oracle_share"] for name, p in policies.items()}
    assert shares["efficiency"]["overall"] == 0.0 and shares["oracle"]["overall"] == 1.0
    assert shares["efficiency"]["conversion_groups"] is None  # it routes no group by conversion
    assert shares["presale=conversion:high"]["groups"] == ["presale"]
    high = shares["conversion:high"]
    assert high["conversion_groups"] == pytest.approx(high["overall"])  # every group
    assert isinstance(high["overall"], float)
    for p in policies.values():
        assert (
            p["measures"]["headline"]["oracle_share"]
            == p["measures"]["oracle_share"]["conversion_groups"]
        )


def test_a_missing_reference_is_run_on_the_same_buyers_and_reported_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without `--mode oracle` the oracle still runs, as a reference: the shares are those
    of a run that asked for it, and the oracle is in `references`, not among the policies."""
    plain = simulate(tmp_path, "plain")
    asked = simulate(tmp_path, "asked", "--mode", "oracle")
    assert list(plain["policies"]) == ["efficiency", "conversion:high"]
    assert list(plain["references"]) == ["oracle"] and asked["references"] == {}
    for name in plain["policies"]:
        share = plain["policies"][name]["measures"]["oracle_share"]
        assert share == asked["policies"][name]["measures"]["oracle_share"]
    assert isinstance(
        plain["policies"]["conversion:high"]["measures"]["headline"]["oracle_share"], float
    )
    oracle = asked["policies"]["oracle"]
    assert plain["references"]["oracle"] == {
        "inquiries": oracle["inquiries"],
        "headline": oracle["measures"]["headline"],
        "conversion": oracle["measures"]["conversion"],
    }
    assert "oracle (reference)" not in capsys.readouterr().out  # not a row of the table


def test_with_neither_reference_both_run_and_the_table_shows_the_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    for out in outs:
        code = main(
            ["simulate", "--shop", str(BIG), "--scenario", "steady", "--scale", "0.25",
             "--mode", "presale=conversion:high", "--json", str(out)]
        )  # fmt: skip
        assert code == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()  # references included: same bytes
    doc = orjson.loads(outs[0].read_bytes())
    assert list(doc["policies"]) == ["presale=conversion:high"]
    assert list(doc["references"]) == ["efficiency", "oracle"]
    refs = {name: r["headline"]["oracle_share"] for name, r in doc["references"].items()}
    assert refs == {"efficiency": None, "oracle": 1.0}  # efficiency routes no group by conversion
    share = doc["policies"]["presale=conversion:high"]["measures"]["headline"]["oracle_share"]
    assert isinstance(share, float)
    printed = " ".join(capsys.readouterr().out.split())  # the caption wraps to the table
    assert f"{share:.0%}" in printed
    assert "oracle share against efficiency and oracle, run as references" in printed


def test_history_flag_says_what_the_shop_knew(tmp_path: Path) -> None:
    known, blank = simulate(tmp_path, "known"), simulate(tmp_path, "blank", "--history", "none")
    assert (known["history"], blank["history"]) == ("30d", "none")
    high = [d["policies"]["conversion:high"]["measures"]["conversion"] for d in (known, blank)]
    assert high[0] != high[1]  # conversion mode routes by what it knows
    eff = [d["policies"]["efficiency"]["measures"]["waits"] for d in (known, blank)]
    assert eff[0] == eff[1]  # efficiency ignores rates


def test_history_flag_chooses_the_shops_past(tmp_path: Path) -> None:
    """`--history 30d` is the default; `none` starts from nothing, and changes the announced
    waits (the engine knows who usually comes online only with a past)."""
    default, month = simulate(tmp_path, "d"), simulate(tmp_path, "m", "--history", "30d")
    nothing = simulate(tmp_path, "n", "--history", "none")
    assert default == month
    estimates = [doc["policies"]["efficiency"]["measures"]["estimates"] for doc in (month, nothing)]
    assert estimates[0]["fenliu"] != estimates[1]["fenliu"]
    with pytest.raises(SystemExit):
        main(["simulate", "--shop", str(BIG), "--scenario", "steady", "--history", "7d"])
