"""The `fenliu` command line (CONTRACT.md section 8).

Each subcommand lives in the module that owns its subject; this file only parses arguments
and dispatches, importing the subject module lazily so `fenliu check-config` starts fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _check_config(args: argparse.Namespace) -> int:
    from daemon.config import check_config_command

    return check_config_command(Path(args.path))


def _dev(args: argparse.Namespace) -> int:
    from daemon.demo import run_demo

    return run_demo(shop_path=Path(args.shop) if args.shop else None)


def _run(args: argparse.Namespace) -> int:
    from daemon.service import run_command

    return run_command(Path(args.config), log_level=args.log_level)


def _reload(args: argparse.Namespace) -> int:
    from daemon.control import reload_command

    return reload_command(Path(args.config))


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
    reload.set_defaults(func=_reload)

    dev = sub.add_parser(
        "dev", help="run a scripted shop scenario through the routing engine and show decisions"
    )
    dev.add_argument("--shop", help="shop file to use (default: the big example shop)")
    dev.set_defaults(func=_dev)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `fenliu` console script."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
