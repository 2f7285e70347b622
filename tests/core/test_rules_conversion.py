"""contract §3 rule 5, `conversion` (转化优先): strength, min agents, level, observed rates."""

from __future__ import annotations

from typing import Any

import orjson

from daemon.core.engine import Engine
from daemon.core.snapshot import dump_shop, load_shop
from daemon.core.stats import MAX_STRENGTH, MIN_STRENGTH
from tests.scenario import SHOP, Scenario, group, shop

AGENTS = ["star", "a2", "a3", "a4", "a5", "a6"]


def _conv_shop(strength: str = "mid", agents: list[Any] | None = None, **kw: Any) -> Any:
    rows = agents or AGENTS
    ids = [r["id"] if isinstance(r, dict) else r for r in rows]
    return shop(
        rows,
        groups=[group("presale", ids, mode="conversion", conversion_strength=strength)],
        sticky_window=0,
        **kw,
    )


def _star_rated(strength: str, others: float, buyers: int, **kw: Any) -> Scenario:
    """Every agent online, "star" reported at 30% and the others at `others`, then `buyers`
    buyers b0, b1, ... inquire."""
    sc = Scenario(_conv_shop(strength, **kw))
    sc.at("0s").online(*AGENTS)
    sc.stats("star", 0.30)
    for agent in AGENTS[1:]:
        sc.stats(agent, others)
    for n in range(buyers):
        sc.inquiry(f"b{n}")
    return sc


def _star_share(strength: str, buyers: int = 120) -> int:
    return _star_rated(strength, 0.10, buyers).share(AGENTS)["star"]


def test_high_conversion_agent_gets_a_larger_share_than_an_even_split() -> None:
    assert _star_share("low") > 120 // len(AGENTS)


def test_higher_strength_gives_high_converters_a_larger_share() -> None:
    low, mid, high = _star_share("low"), _star_share("mid"), _star_share("high")
    assert low < mid < high


def test_conversion_applies_only_above_conversion_min_agents() -> None:
    sc = Scenario(_conv_shop(conversion_min_agents=5))
    sc.at("0s").online(*AGENTS[:5])
    sc.inquiry("b1")
    mode = sc.assignment("b1").mode
    assert mode is not None and mode.value == "efficiency"
    sc.online(AGENTS[5])
    sc.inquiry("b2")
    mode = sc.assignment("b2").mode
    assert mode is not None and mode.value == "conversion"


def test_conversion_with_five_or_fewer_agents_behaves_exactly_like_efficiency() -> None:
    def shares(mode: str) -> dict[str, int]:
        ids = AGENTS[:5]
        cfg = shop(ids, groups=[group("g", ids, mode=mode)], sticky_window=0)
        sc = Scenario(cfg)
        sc.at("0s").online(*ids)
        sc.stats("star", 0.9)
        for n in range(50):
            sc.inquiry(f"b{n}")
        return sc.share(ids)

    assert shares("conversion") == shares("efficiency")


def test_level_scales_an_agents_share_at_equal_conversion() -> None:
    rows: list[Any] = [{"id": "star", "level": 5}, {"id": "a2", "level": 1}, *AGENTS[2:]]
    sc = Scenario(_conv_shop(agents=rows))
    sc.at("0s").online(*AGENTS)
    for n in range(120):
        sc.inquiry(f"b{n}")
    share = sc.share(AGENTS)
    assert share["star"] > share["a3"] > share["a2"]


def test_busy_agent_is_not_preferred_over_idle_one_at_equal_conversion() -> None:
    sc = Scenario(_conv_shop(busy_threshold=0))
    sc.at("0s").online(*AGENTS)
    for n in range(6):
        sc.inquiry(f"b{n}")  # one each
    busy_agent = sc.assignment("b0").agent_id
    sc.says("b0")
    for n in range(6, 11):
        sc.inquiry(f"b{n}")
    assert busy_agent not in {sc.assignment(f"b{n}").agent_id for n in range(6, 11)}


def test_agent_stats_override_the_observed_rate() -> None:
    sc = Scenario(_conv_shop("high"))
    sc.at("0s").online(*AGENTS)
    for n in range(60):  # observed: a2 converts everything
        sc.inquiry(f"x{n}")
        if sc.assignment(f"x{n}").agent_id == "a2":
            sc.order(f"x{n}")
    cand = sc.engine.shop("shop").candidate("presale")
    agents = sc.engine.shop("shop").agents
    assert cand.rate(agents["a2"]) > cand.rate(agents["a3"])
    sc.stats("a2", 0.0)
    assert cand.rate(agents["a2"]) == 0.0


def test_observed_rate_is_smoothed_so_a_new_agent_is_not_starved() -> None:
    sc = Scenario(_conv_shop("high"))
    sc.at("0s").online(*AGENTS[:5])
    for n in range(100):
        sc.at(f"{n}s").inquiry(f"x{n}")
        sc.order(f"x{n}")  # every veteran converts
        sc.replies(f"x{n}", sc.assignment(f"x{n}").agent_id)
    sc.at("20m")  # every session timed out
    sc.online("a6")
    for n in range(30):
        sc.inquiry(f"b{n}")
    new_share = sc.share(AGENTS)["a6"]
    assert 0 < new_share < 30  # a newcomer gets buyers, but is not flooded either


def test_conversion_mode_is_reported_on_assignments() -> None:
    sc = Scenario(_conv_shop())
    sc.at("0s").online(*AGENTS)
    sc.inquiry("b1")
    a = sc.assignment("b1")
    assert a.reason.value == "routed" and a.mode is not None and a.mode.value == "conversion"


# ------------------------------------------------------------------ the lab's oracle

TRUE = {"star": 0.30, "a2": 0.25, "a3": 0.20, "a4": 0.15, "a5": 0.10, "a6": 0.05}


def _oracle(**kw: Any) -> Scenario:
    """A conversion shop whose engine ranks by the true rates (`Engine(oracle=...)`)."""
    sc = Scenario(_conv_shop(**kw))
    sc.engine = Engine({SHOP: sc.config}, oracle={SHOP: TRUE})
    return sc


def test_oracle_picks_the_best_true_converter_below_its_cap() -> None:
    sc = _oracle(queue={"enabled": True, "default_cap": 2}, conversion_min_agents=2)
    sc.at("0s").online(*AGENTS)
    for n in range(6):
        sc.inquiry(f"b{n}")
    got = [sc.assignment(f"b{n}").agent_id for n in range(6)]
    assert got == ["star", "star", "a2", "a2", "a3", "a3"]  # caps hold; rate decides


def test_oracle_never_prefers_a_busy_agent_over_an_idle_one() -> None:
    sc = _oracle(busy_threshold=0)
    sc.at("0s").online(*AGENTS)
    sc.inquiry("b0")
    assert sc.assignment("b0").agent_id == "star"
    sc.says("b0")  # star is busy now
    sc.inquiry("b1")
    assert sc.assignment("b1").agent_id == "a2"


def test_oracle_uses_efficiency_with_min_agents_or_fewer() -> None:
    sc = _oracle(conversion_min_agents=5)
    sc.at("0s").online(*AGENTS[1:])  # five eligible: efficiency, file order on a tie
    sc.inquiry("b0")
    a = sc.assignment("b0")
    assert a.mode is not None and a.mode.value == "efficiency" and a.agent_id == "a2"
    sc.online("star")
    sc.inquiry("b1")
    a = sc.assignment("b1")
    assert a.mode is not None and a.mode.value == "conversion" and a.agent_id == "star"


# ------------------------------------------------------------------ issue 15: the model


def _first_picks(strength: str, n: int) -> list[str]:
    sc = _star_rated(strength, 0.20, n)
    return [sc.assignment(f"b{k}").agent_id for k in range(n)]


def test_high_really_prefers_the_better_converter_among_idle_agents() -> None:
    """Not a lead of one session: the star takes several buyers before the others one."""
    assert _first_picks("high", 6).count("star") >= 4


def test_low_stays_close_to_efficiency() -> None:
    assert _first_picks("low", 6).count("star") <= 2
    assert _first_picks("low", 12).count("star") <= 3


def test_high_never_gives_a_busy_star_a_buyer_while_someone_is_idle() -> None:
    sc = Scenario(_conv_shop("high", busy_threshold=0))
    sc.at("0s").online(*AGENTS)
    sc.stats("star", 0.90)
    for agent in AGENTS[1:]:
        sc.stats(agent, 0.05)
    sc.inquiry("b0")
    assert sc.assignment("b0").agent_id == "star"
    sc.says("b0")  # the star owes a reply: busy
    for k in range(1, 6):
        sc.inquiry(f"b{k}")
    assert "star" not in {sc.assignment(f"b{k}").agent_id for k in range(1, 6)}


def _observed(counts: dict[str, tuple[int, int]]) -> Any:
    """The presale candidate with agents' (converted, sessions) set as if observed."""
    sc = Scenario(_conv_shop("high"))
    shop_engine = sc.engine.shop("shop")
    cand = shop_engine.candidate("presale")
    for agent_id, (conv, n) in counts.items():
        agent = shop_engine.agents[agent_id]
        agent.converted_sessions, agent.sessions_total = conv, n
    cand.stats.recount(sum(n for _, n in counts.values()), sum(c for c, _ in counts.values()))
    return cand


def test_prior_strength_follows_the_spread_of_observed_rates() -> None:
    same = _observed({a: (20, 100) for a in AGENTS})  # no spread beyond noise
    assert same.current_strength() == MAX_STRENGTH
    spread = _observed({a: (5 + 10 * i, 100) for i, a in enumerate(AGENTS)})  # 5% .. 55%
    assert MIN_STRENGTH <= spread.current_strength() < MAX_STRENGTH
    assert _observed({"star": (3, 5)}).current_strength() == MAX_STRENGTH  # one agent: no spread


def test_observed_rates_shrink_toward_the_group_mean_by_the_prior_strength() -> None:
    cand = _observed({a: (5 + 10 * i, 100) for i, a in enumerate(AGENTS)})
    cand.rerank_if_prior_drifted(started=True)  # 600 sessions: a multiple of 6 members
    m, mean = cand.stats.prior_strength, cand.stats.prior_used
    assert m == cand.current_strength() and mean == cand.stats.current_prior()
    shrunk = cand.stats.shrunk
    assert shrunk(1, 1) == (1 + m * mean) / (1 + m)  # one lucky sale stays near the mean
    assert shrunk(1, 1) < 0.5
    assert abs(shrunk(550, 1000) - 0.55) < 0.02  # a long record speaks for itself


def test_the_learned_prior_survives_snapshot_and_restore() -> None:
    sc = Scenario(_conv_shop("high"))
    sc.at("0s").online(*AGENTS)
    for n in range(120):  # star sells to everyone, the others to nobody
        sc.at(f"{n}s").inquiry(f"x{n}")
        if sc.assignment(f"x{n}").agent_id == "star":
            sc.order(f"x{n}")
    engine = sc.engine.shop("shop")
    cand = engine.candidate("presale")
    assert cand.stats.prior_strength < MAX_STRENGTH  # the spread was learned
    data = orjson.loads(orjson.dumps(dump_shop(engine)))
    back = load_shop(sc.config, data, dedup_capacity=1000).candidate("presale")
    learned = (back.stats.prior_strength, back.stats.prior_used)
    assert learned == (cand.stats.prior_strength, cand.stats.prior_used)
    agents = engine.agents
    assert [back.rate(agents[a]) for a in AGENTS] == [cand.rate(agents[a]) for a in AGENTS]
