"""Grey tests (contract §3.7) end to end: real `fenliu run` processes, a real broker and Redis.

The module daemon (tests/system/conftest.py) serves one shop per test; the fleet test starts
two instances of its own. Every shop runs `[experiment]` with control = efficiency and
treatment = average, so an assignment's `mode` names the policy that picked its agent. The
tests know each buyer's arm the way any instance must compute it, from the experiment name
and the buyer id alone (`Experiment(...).arm_of`, as tests/core/test_rules_experiment.py).

Per-arm counts are read from the last checkpoint (the shop's meta part in Redis, `state` ->
`experiments.running`); a checkpoint is in Redis before any output of its batch reaches
Kafka, so once an output is seen, Redis holds at least the state that made it.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections import Counter
from collections.abc import Iterable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from daemon.config import TopicsConfig, load_config
from daemon.core.config import ShopConfig
from daemon.core.experiment import CHECK_EVERY, Experiment
from daemon.core.grey_stats import MIN_COUNT, WaitHistogram
from daemon.dev.stack import Broker
from daemon.service.kafka import home_partition
from daemon.tools.topics_admin import create_topics
from tests.chaos import read_outputs
from tests.chaos_check import check
from tests.conftest import unique_topics
from tests.e2e import DaemonProcess, Wire, fleet_of_two, until
from tests.system.test_e2e_daemon import api_get

pytestmark = pytest.mark.e2e

POLICY = {"control": "efficiency", "treatment": "average"}
OPENING = ("routed", "sticky", "repeat_entry", "dequeued")  # a session the arm counts
N = MIN_COUNT  # replies per arm in the guardrail test: the fewest a guardrail decides on


def grey_shop(
    shop_id: str, *, agents: int = 4, cap: int = 0, deadline: str = "3m", guardrails: str = ""
) -> str:
    """A shop of `agents` agents in one group running experiment `grey-<id>`; with `cap`,
    queueing on at that cap (sessions that outlast the test, no repeat entry). No stickiness:
    every new session is picked by a policy."""
    queue = (
        f'[queue]\nenabled = true\ndefault_cap = {cap}\nsession_timeout = "10m"\n'
        "repeat_entry_window = 0\n"
        if cap
        else ""
    )
    ids = [f"a{n}" for n in range(1, agents + 1)]
    return (
        f'id = "{shop_id}"\nsticky_window = 0\n{queue}'
        f'[replies]\ndeadline = "{deadline}"\n'
        + "".join(f'[[agents]]\nid = "{a}"\n' for a in ids)
        + f'[[groups]]\nname = "g"\nagents = {orjson.dumps(ids).decode()}\n'
        f'[experiment]\nname = "grey-{shop_id}"\n'
        'arms = { control = "efficiency", treatment = "average" }\n'
        "split = { control = 50, treatment = 50 }\n"
        f"guardrails = {{ {guardrails} }}\n"
    )


SHOPS = {
    "arms": grey_shop("arms", cap=1),
    "orders": grey_shop("orders", agents=3),
    "guard": grey_shop("guard", deadline="1s", guardrails='replies_within_deadline = "-3pp"'),
}


def experiment_of(text: str) -> Experiment:
    """The experiment a shop file runs, as every instance builds it."""
    config = ShopConfig.model_validate(tomllib.loads(text)).experiment
    assert config is not None
    return Experiment(config, 0)


def pick(exp: Experiment, arm: str, n: int, prefix: str = "b") -> list[str]:
    """The first `n` buyer ids <prefix>0, <prefix>1, … that fall in `arm`."""
    found = (b for b in (f"{prefix}{i}" for i in range(10_000)) if exp.arm_of(b) == arm)
    return [next(found) for _ in range(n)]


def stored_running(redis_url: str, prefix: str, shop: str) -> dict[str, Any]:
    """The running experiment as the shop's last checkpoint holds it."""
    with redis.Redis.from_url(redis_url) as client:
        raw = client.hget(f"{prefix}:{{{shop}}}:meta", "state")
    assert raw is not None, f"no checkpoint of shop {shop}"
    running = orjson.loads(raw)["experiments"]["running"]
    assert isinstance(running, dict)
    return running


def daemon_redis(daemon: DaemonProcess) -> tuple[str, str]:
    """The module daemon's Redis URL and key prefix."""
    config = load_config(daemon.config)
    return config.redis.url, config.redis.key_prefix


def assert_arms(exp: Experiment, outputs: Iterable[dict[str, Any]]) -> int:
    """Every assignment and queue_update names the experiment and the arm `arm_of` gives
    its buyer; how many there were."""
    n = 0
    for e in outputs:
        if e["type"] in ("assignment", "queue_update"):
            assert (e["experiment"], e["arm"]) == (exp.name, exp.arm_of(e["buyer_id"])), e
            n += 1
    return n


async def say(w: Wire, buyer: str, agent: str | None = None) -> None:
    """A chat message from the buyer, or from `agent` to the buyer."""
    sender = {"from": "agent", "agent_id": agent} if agent else {"from": "buyer"}
    await w.send(w.topics.messages, {"type": "message", "buyer_id": buyer, **sender})


async def order(w: Wire, buyer: str, amount: float) -> None:
    """The buyer places an order."""
    await w.send(w.topics.inquiries, {"type": "order", "buyer_id": buyer, "amount": amount})


async def test_outputs_carry_the_arm_and_each_arm_is_routed_by_its_policy(
    daemon: DaemonProcess, broker: Broker, topics: TopicsConfig
) -> None:
    """Both arms routed at once and from the line: each assignment's mode is its arm's
    policy; every assignment and queue_update carries the experiment and the buyer's arm."""
    exp = experiment_of(SHOPS["arms"])
    cs, ts = pick(exp, "control", 2), pick(exp, "treatment", 2)
    async with Wire(broker.bootstrap, topics, "arms") as w:
        await w.status("a1", "online")
        await w.status("a2", "online")  # two places (cap 1): the first two are served
        for buyer in (cs[0], ts[0], cs[1], ts[1]):
            await w.inquiry(buyer)
        await w.wait_for(lambda e: e.get("status") == "queued", count=2)
        await w.status("a3", "online")
        await w.status("a4", "online")
        for buyer in (cs[1], ts[1]):
            await w.assignment(buyer)
        await w.wait_for(lambda e: e.get("status") == "dequeued", count=2)
    assert assert_arms(exp, w.seen) >= 8
    given = {e["buyer_id"]: e for e in w.seen if e["type"] == "assignment"}
    assert {b: (a["reason"], a["mode"], a["arm"]) for b, a in given.items()} == {
        cs[0]: ("routed", "efficiency", "control"),
        ts[0]: ("routed", "average", "treatment"),
        cs[1]: ("dequeued", "efficiency", "control"),
        ts[1]: ("dequeued", "average", "treatment"),
    }
    queued = {(e["buyer_id"], e["status"]) for e in w.seen if e["type"] == "queue_update"}
    assert queued >= {(b, s) for b in (cs[1], ts[1]) for s in ("queued", "dequeued")}


async def test_orders_are_counted_in_the_arm_of_their_buyer(
    daemon: DaemonProcess, broker: Broker, topics: TopicsConfig
) -> None:
    """`order` events credited to a session (contract §1.2) count in its buyer's arm:
    converted sessions, orders and amount; an order of a buyer without a session counts
    nowhere."""
    exp = experiment_of(SHOPS["orders"])
    cs, ts = pick(exp, "control", 4), pick(exp, "treatment", 4)
    async with Wire(broker.bootstrap, topics, "orders") as w:
        for agent in ("a1", "a2", "a3"):
            await w.status(agent, "online")
        for buyer in cs[:3] + ts[:3]:
            await w.inquiry(buyer)
        for buyer in cs[:3] + ts[:3]:
            await w.assignment(buyer)
        await order(w, cs[0], 10.0)
        await order(w, ts[0], 5.0)
        await order(w, ts[0], 7.0)  # the same session again: an order, not a conversion
        await order(w, ts[1], 3.0)
        await order(w, ts[3], 99.0)  # never inquired: no session to credit
        await w.inquiry(cs[3])  # on the same partition after the orders
        await w.assignment(cs[3])  # so the checkpoint that holds them is in Redis
    running = stored_running(*daemon_redis(daemon), "orders")
    figures = running["figures"]
    counted = {
        arm: (f["sessions"], f["converted"], f["orders"], f["amount"]) for arm, f in figures.items()
    }
    assert counted == {"control": (4, 1, 1, 10.0), "treatment": (3, 2, 3, 15.0)}


async def test_a_guardrail_stops_an_arm_whose_buyers_then_get_controls_policy_and_keep_their_arm(
    daemon: DaemonProcess, broker: Broker, topics: TopicsConfig
) -> None:
    """guardrails replies_within_deadline = "-3pp", deadline 1 s: control's agents answer at
    once, treatment's only after every treatment buyer is overdue (the daemon's clock is its
    wall clock, not the events' `ts`: the API's `overdue` shows when the deadline passed).
    With N replies in each arm the guardrail stops treatment; a treatment buyer who comes
    next is routed by control's policy and still carries arm treatment, and the checkpoint
    names the stop."""
    exp = experiment_of(SHOPS["guard"])
    cs, ts = pick(exp, "control", N + 1), pick(exp, "treatment", N + 1)
    agents = ("a1", "a2", "a3", "a4")
    async with Wire(broker.bootstrap, topics, "guard") as w:
        for agent in agents:
            await w.status(agent, "online")
        for buyer in cs[:N] + ts[:N]:
            await w.inquiry(buyer)
        given = {b: await w.assignment(b) for b in cs[:N] + ts[:N]}
        for buyer in cs[:N]:
            await say(w, buyer)
            await say(w, buyer, given[buyer]["agent_id"])  # within the deadline
        for buyer in ts[:N]:
            await say(w, buyer)

        def owed(pending: int, overdue: int) -> Any:
            """The API shows this many replies owed, and this many of them overdue."""

            def shows(status: int, shop: Any) -> bool:
                rows = shop["agents"] if status == 200 else []
                owing = sum(a["pending_replies"] for a in rows), sum(a["overdue"] for a in rows)
                return owing == (pending, overdue)

            return shows

        await asyncio.to_thread(api_get, daemon, "/api/shops/guard", owed(N, N))
        for buyer in ts[:N]:
            await say(w, buyer, given[buyer]["agent_id"])  # past the deadline
        # every reply applied; the guardrails are looked at every CHECK_EVERY counts (sessions
        # opened and replies), so with the last reply here, the 4N-th
        assert 4 * N % CHECK_EVERY == 0
        await asyncio.to_thread(api_get, daemon, "/api/shops/guard", owed(0, 0))
        await w.inquiry(ts[N])
        await w.inquiry(cs[N])
        late, control = await w.assignment(ts[N]), await w.assignment(cs[N])
    assert {given[b]["mode"] for b in ts[:N]} == {"average"}
    assert {given[b]["mode"] for b in cs[:N]} == {"efficiency"}
    assert (late["arm"], late["mode"]) == ("treatment", "efficiency")
    assert (control["arm"], control["mode"]) == ("control", "efficiency")
    assert_arms(exp, w.seen)
    running = stored_running(*daemon_redis(daemon), "guard")
    assert list(running["stopped"]) == ["treatment"]
    assert running["stopped"]["treatment"]["guardrail"] == "replies_within_deadline"
    treatment = running["figures"]["treatment"]
    assert (treatment["sessions"], treatment["replies"], treatment["in_time"]) == (N + 1, N, 0)
    assert running["figures"]["control"]["replies"] == N


# ------------------------------------------------------------------------- a fleet of two

FLEET = tuple(
    next(s for s in (f"g{n}" for n in range(100)) if home_partition(s.encode(), 4) == p)
    for p in range(4)
)  # one shop on each of 4 partitions: whatever the split, both instances own some


class Script:
    """One fleet shop's part of the story, phase by phase (the test below); each phase waits
    for the outputs it must give, and checks that they are the ones planned."""

    def __init__(self, w: Wire) -> None:
        self.w = w
        self.b = [f"{w.shop}-b{n}" for n in range(1, 11)]
        self.ordered: list[str] = []  # buyers whose open session got an order

    async def decided(self, buyers: list[str]) -> tuple[list[str], list[str]]:
        """Inquiries of `buyers`: their ids, and what each one's first output was."""
        w, ids, firsts = self.w, [await self.w.inquiry(b) for b in buyers], []
        for inquiry in ids:
            (first, *_) = await w.wait_for(
                lambda e, i=inquiry: (
                    e.get("inquiry_id") == i and e["type"] in ("assignment", "queue_update")
                )
            )
            firsts.append(f"{first['type']}:{first.get('reason') or first['status']}")
        return ids, firsts

    async def dequeued(self, inquiry_ids: list[str]) -> None:
        for inquiry in inquiry_ids:
            await self.w.wait_for(
                lambda e, i=inquiry: (
                    e["type"] == "assignment" and e["inquiry_id"] == i and e["reason"] == "dequeued"
                )
            )

    async def order(self, buyers: list[str]) -> None:
        for buyer in buyers:
            await order(self.w, buyer, 10.0)
        self.ordered += buyers

    async def one(self) -> list[str]:
        """a1, a2 online (4 places): b1-b4 routed, b5, b6 queued; b1-b4 order. The
        inquiries still in line."""
        w, b = self.w, self.b
        await w.status("a1", "online")
        await w.status("a2", "online")
        ids, got = await self.decided(b[:6])
        assert got == ["assignment:routed"] * 4 + ["queue_update:queued"] * 2
        await self.order(b[:4])
        return ids[4:]

    async def two(self, waiting: list[str]) -> list[str]:
        """a3 online takes b5, b6 from the line; b1, b2 ask again (their sessions go on);
        b7, b8 queue (all 6 places taken); b5, b6 order. The inquiries still in line."""
        w, b = self.w, self.b
        await w.status("a3", "online")
        await self.dequeued(waiting)
        ids, got = await self.decided(b[:2] + b[6:8])
        assert got == ["assignment:active_session"] * 2 + ["queue_update:queued"] * 2
        await self.order(b[4:6])
        return ids[2:]

    async def three(self, waiting: list[str]) -> list[str]:
        """a1 offline ends its two sessions; online again, it takes b7, b8 from the line;
        its two former buyers come back to a full shop and queue. Their inquiries."""
        w = self.w
        routed = ("assignment", "routed", "a1")
        first = list(
            dict.fromkeys(
                e["buyer_id"]
                for e in w.seen
                if (e["type"], e.get("reason"), e.get("agent_id")) == routed
            )
        )  # the buyers a1 took in phase one (an output seen twice is one, delivered again)
        assert len(first) == 2
        await w.status("a1", "offline")
        for buyer in first:
            await w.wait_for(
                lambda e, x=buyer: e["type"] == "session_closed" and e["buyer_id"] == x
            )
        await w.status("a1", "online")
        await self.dequeued(waiting)
        ids, got = await self.decided(first)
        assert got == ["queue_update:queued"] * 2
        return ids

    async def four(self, back: list[str]) -> None:
        """b7, b8 order; b9, b10 queue behind a1's former two; a4 online takes those two."""
        w, b = self.w, self.b
        await self.order(b[6:8])
        _, got = await self.decided(b[8:10])
        assert got == ["queue_update:queued"] * 2
        await w.status("a4", "online")
        await self.dequeued(back)


def owners(daemons: dict[str, DaemonProcess]) -> dict[str, str]:
    """Which instance serves each shop now, by its API (a snapshot up to a second old)."""
    found = {}
    for name, daemon in daemons.items():
        status, body = daemon.get("/api/shops")
        if status == 200:
            found |= {s["id"]: name for s in orjson.loads(body)["shops"]}
    return found


def figures_from_outputs(
    exp: Experiment, outputs: Iterable[dict[str, Any]], ordered: list[str]
) -> dict[str, dict[str, Any]]:
    """Per arm, what the engine must have counted, from the outputs (each id once) and the
    buyers whose sessions got one order each: a session per opening assignment (its wait
    in the histogram); a buyer per opening assignment not from the line, and per `queued`
    update (this script has no overflow and no reload, the other two ways to be queued)."""
    figures = {arm: {"buyers": 0, "sessions": 0, "waits": WaitHistogram()} for arm in POLICY}
    for e in outputs:
        f = figures[exp.arm_of(e["buyer_id"])]
        if e["type"] == "assignment" and e["reason"] in OPENING:
            f["sessions"] += 1
            f["waits"].add(e["waited_ms"])
            f["buyers"] += e["reason"] != "dequeued"
        elif e["type"] == "queue_update" and e["status"] == "queued":
            f["buyers"] += 1
    orders = Counter(exp.arm_of(b) for b in ordered)
    return {
        arm: {
            **f,
            "waits": f["waits"].learned(),
            "converted": orders[arm],
            "orders": orders[arm],
            "amount": 10.0 * orders[arm],
        }
        for arm, f in figures.items()
    }


@pytest.mark.timeout(120)
async def test_arms_and_counts_hold_across_restarts_and_partitions_moving_between_instances(
    broker: Broker, redis_url: str, tmp_path: Path
) -> None:
    """Two instances in one group, four shops on four partitions, four phases: x alone; y
    joins (shops move from x to y while both run); x stops (its shops move to y); x starts
    again (shops move back). Every phase routes, queues, dequeues buyers queued under
    another owner, and credits orders.

    What must hold, over every output read back from the topics (each id once: redelivered
    outputs repeat their id and contents, which tests/chaos_check also judges):
    - every assignment and queue_update carries `arm_of(buyer)`: one arm per buyer, the same
      on both instances, before and after each move and restart;
    - every session opened (routed or from the line) has its arm's policy as `mode`;
    - each shop's last checkpoint counts per arm exactly the buyers, sessions and waits its
      outputs show, and the orders sent. The engine counts a session when it emits the
      opening assignment, a buyer with that or its `queued` update; a checkpoint holds the
      state together with the outputs it made, no output reaches Kafka before it, the next
      owner restores that state and resends those outputs, and events read again are
      deduplicated by id. So a restore that lost, reset or doubled the counts shows here.
    """
    topics = unique_topics()
    await create_topics(broker.bootstrap, topics, partitions=4)
    prefix = topics.inquiries.split(".")[0]
    texts = {s: grey_shop(s, cap=2) for s in FLEET}
    x, y = fleet_of_two(
        tmp_path, bootstrap=broker.bootstrap, redis_url=redis_url, topics=topics, shops=texts
    )
    daemons = {"x": x, "y": y}

    async def served(what: str, ok: Any) -> None:
        def now() -> bool:
            found = owners(daemons)
            return set(found) == set(FLEET) and bool(ok(found))

        await until(now, 60, what)

    def split(found: dict[str, str]) -> bool:
        return set(found.values()) == {"x", "y"}

    scripts: list[Script] = []
    try:
        async with AsyncExitStack() as wires:
            for shop in FLEET:
                w = await wires.enter_async_context(Wire(broker.bootstrap, topics, shop))
                scripts.append(Script(w))
            x.start()
            await served("all shops on x", lambda found: set(found.values()) == {"x"})
            queued = await asyncio.gather(*(s.one() for s in scripts))
            y.start(ready="/healthz")
            await served("the shops split over x and y", split)
            queued = await asyncio.gather(*(s.two(q) for s, q in zip(scripts, queued, strict=True)))
            assert x.stop()[0] == 0
            await served("all shops on y", lambda found: set(found.values()) == {"y"})
            queued = await asyncio.gather(
                *(s.three(q) for s, q in zip(scripts, queued, strict=True))
            )
            x.start(ready="/healthz")
            await served("the shops split over x and y again", split)
            await asyncio.gather(*(s.four(q) for s, q in zip(scripts, queued, strict=True)))
    finally:
        codes = [d.stop()[0] for d in daemons.values() if d.proc is not None]
    assert set(codes) == {0}
    outputs = await read_outputs(broker.bootstrap, topics)
    sent = [e for s in scripts for e in s.w.sent]
    configs = {s: ShopConfig.model_validate(tomllib.loads(t)) for s, t in texts.items()}
    verdict = check(sent, outputs, configs)
    assert verdict.clean, verdict.report(examples=5)
    once = {e["id"]: e for e in outputs if e.get("type") in ("assignment", "queue_update")}
    arms_seen: Counter[tuple[str, str]] = Counter()
    for script in scripts:
        shop = script.w.shop
        exp = experiment_of(texts[shop])
        mine = [e for e in once.values() if e["shop_id"] == shop]
        assert_arms(exp, mine)
        opened = [e for e in mine if e["type"] == "assignment" and e["reason"] in OPENING]
        for e in opened:
            assert e["mode"] == POLICY[e["arm"]], e
            arms_seen[e["arm"], e["reason"]] += 1
        expected = figures_from_outputs(exp, mine, script.ordered)
        assert sum(f["sessions"] for f in expected.values()) == 10, "the script ran as planned"
        assert sum(f["buyers"] for f in expected.values()) == 12
        stored = stored_running(redis_url, prefix, shop)["figures"]
        keys = ("buyers", "sessions", "waits", "converted", "orders", "amount")
        assert {arm: {k: f[k] for k in keys} for arm, f in stored.items()} == expected, shop
    assert min(arms_seen[arm, reason] for arm in POLICY for reason in ("routed", "dequeued")) > 0
