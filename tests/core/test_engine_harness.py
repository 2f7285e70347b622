"""The property harness itself: a check name that no invariant reports under is an error, so
a misspelled name cannot quietly turn a property test into one that checks nothing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from daemon.core.config import ShopConfig
from tests.engine_checks import CHECKS
from tests.engine_observer import Observer
from tests.strategies import SHOP

HERE = Path(__file__).resolve().parents[1]  # tests/, where the harness lives
CONFIG = ShopConfig.model_validate(
    {"id": SHOP, "agents": [{"id": "a1"}], "groups": [{"name": "g", "agents": ["a1"]}]}
)


def test_a_misspelled_check_name_is_an_error_listing_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown checks \['one_agnet'\]") as raised:
        Observer(CONFIG, {"one_agent", "one_agnet"})
    assert all(repr(name) in str(raised.value) for name in CHECKS)


def test_every_known_check_name_is_accepted() -> None:
    assert Observer(CONFIG, set(CHECKS)).checks == set(CHECKS)


def test_the_check_names_are_exactly_those_the_invariants_report_under() -> None:
    """Every `fail("name", ...)` and `"name" in self.checks` of the harness uses a name of
    CHECKS, and every name of CHECKS is reported under somewhere."""
    used: set[str] = set()
    for name in ("engine_checks.py", "engine_observer.py"):
        for node in ast.walk(ast.parse((HERE / name).read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "fail"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                used.add(node.args[0].value)
            elif (
                isinstance(node, ast.Compare)
                and isinstance(node.left, ast.Constant)
                and ast.unparse(node.comparators[0]) == "self.checks"
            ):
                used.add(node.left.value)
    assert used == CHECKS


def test_fail_under_an_unknown_name_is_an_error_even_when_unselected() -> None:
    observer = Observer(CONFIG, set())
    with pytest.raises(ValueError, match="unknown checks"):
        observer.fail("stcuk", "never reported")
    observer.fail("stuck", "not selected: ignored")
