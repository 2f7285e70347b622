"""A shop that has run grey tests (contract §3.7), made through the routing core, for the
tests of where people look at them: the log, the metrics, the JSON API, the console and
`fenliu experiment report`.

    sc = grey_scenario()                # t0 ran and ended; t1 runs, treatment stopped
    await write_checkpoint(sc, store)   # the shop's state in Redis, through the real store
    sc = play(grey_start())             # the same, with a look at the engine before

`grey_scenario` drives the engine in virtual time (tests.scenario): experiment `t0` counts a
few buyers and is ended by a reload that renames it (kept as finished); experiment `t1`
(`GREY_SHOP`, the file a daemon serving the shop reads) then gets 60 buyers an arm, whose
agents answer control's buyers in 5 s and treatment's in 200 s, past the 3-minute deadline,
so the replies guardrail stops treatment; a few orders are credited to each arm.
"""

from __future__ import annotations

import tomllib

from daemon.core.config import ShopConfig
from daemon.core.experiment import Experiment
from daemon.service.store import Owned, ShopCheckpoint, Store
from tests.scenario import SHOP, Scenario

GREY_SHOP = f"""
id = "{SHOP}"
sticky_window = "1h"
[[agents]]
id = "a1"
[[agents]]
id = "a2"
[[agents]]
id = "a3"
[[groups]]
name = "g"
agents = ["a1", "a2", "a3"]
[experiment]
name = "t1"
arms = {{ control = "efficiency", treatment = "average" }}
split = {{ control = 50, treatment = 50 }}
guardrails = {{ replies_within_deadline = "-3pp" }}
"""
GUARDRAIL = 'guardrails = { replies_within_deadline = "-3pp" }\n'
BEFORE = GREY_SHOP.replace('name = "t1"', 'name = "t0"')  # the experiment t1 replaced
ANSWERED_MS = {"control": 5_000, "treatment": 200_000}  # treatment's replies are late
PER_ARM = 60


def grey_config(text: str = GREY_SHOP) -> ShopConfig:
    """A shop file's configuration."""
    return ShopConfig.model_validate(tomllib.loads(text))


def buyers_of(config: ShopConfig, arm: str, n: int, prefix: str = "b") -> list[str]:
    """The first `n` buyer ids prefix0, prefix1, … that fall in `arm` of the shop's
    experiment."""
    assert config.experiment is not None
    exp = Experiment(config.experiment, 0)
    return [b for b in (f"{prefix}{i}" for i in range(10_000)) if exp.arm_of(b) == arm][:n]


def grey_scenario(*, guardrail: bool = True) -> Scenario:
    """The shop after its grey tests (module docstring), tracking changes; without
    `guardrail`, t1 runs without its guardrail, so treatment is not stopped (yet: a daemon
    serving GREY_SHOP continues t1 with it, and stops treatment at its next look)."""
    return play(grey_start(), guardrail=guardrail)


def grey_start() -> Scenario:
    """The shop before anything happened to it (`play` it), tracking changes."""
    return Scenario(grey_config(BEFORE), track=True)


def play(sc: Scenario, *, guardrail: bool = True) -> Scenario:
    """Run the grey tests of the module docstring on a `grey_start` scenario."""
    sc.at("0s").online("a1", "a2", "a3")
    for arm, n in (("control", 2), ("treatment", 3)):
        for buyer in buyers_of(sc.config, arm, n, "x"):
            sc.inquiry(buyer)
    t1 = GREY_SHOP if guardrail else GREY_SHOP.replace(GUARDRAIL, "")
    sc.at("1m").reload(grey_config(t1))  # t0 ends, t1 starts
    arms = {arm: buyers_of(sc.config, arm, PER_ARM) for arm in ANSWERED_MS}
    chats = sorted((i, arm, b) for arm, buyers in arms.items() for i, b in enumerate(buyers))
    sc.chats([(buyer, ANSWERED_MS[arm]) for _, arm, buyer in chats], start=120_000)
    for buyer in arms["control"][:6] + arms["treatment"][:3]:
        sc.order(buyer, 20.0)
    return sc


async def write_checkpoint(sc: Scenario, store: Store) -> None:
    """Write the scenario's shop to Redis as the daemon does: claim it, then save what
    changed since the engine began (the whole shop, as a first checkpoint)."""
    (delta,) = sc.engine.take_deltas().values()
    claimed = (await store.claim_shops([SHOP]))[SHOP]
    assert not isinstance(claimed, Exception)
    written = await store.save_shops({SHOP: (Owned(claimed.epoch, 1), ShopCheckpoint(delta))})
    assert written[SHOP] == "ok", written
