"""The aiokafka internals the service relies on, all in this one module.

aiokafka (0.14) has no public call for two things the service needs, so it reaches into the
consumer's group coordinator (`AIOKafkaConsumer._coordinator`, a `GroupCoordinator` once the
consumer started, None before):

- `request_rejoin`: a checkpoint found partitions fenced, so this instance missed a
  rebalance; the coordinator's `request_rejoin()` makes the consumer join the group again.
- `skip_leave_group`: `[kafka] leave_group = false` stops without a LeaveGroup request
  (`GroupCoordinator.close` calls `_maybe_leave_group`, replaced here by a coroutine that
  only forgets the generation), so the group keeps the member until its session times out.

`missing_internals` checks the installed aiokafka for every one of them, with the signature
used here; a test (tests/core/test_aiokafka_compat.py) fails on an aiokafka where any is gone,
naming it, instead of a rebalance or a leave quietly not happening in production.
"""

from __future__ import annotations

import inspect
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.group_coordinator import GroupCoordinator

COORDINATOR = "_coordinator"  # AIOKafkaConsumer's instance attribute
LEAVE = "_maybe_leave_group"  # GroupCoordinator's coroutine, awaited by its `close`
# GroupCoordinator methods called here: name -> is a coroutine function (all take no arguments)
METHODS = {"request_rejoin": False, "reset_generation": False, LEAVE: True}


def request_rejoin(consumer: AIOKafkaConsumer) -> None:
    """Ask the group coordinator for a rebalance (a consumer not started yet has none)."""
    coordinator = getattr(consumer, COORDINATOR)
    if coordinator is not None:
        coordinator.request_rejoin()


def skip_leave_group(consumer: AIOKafkaConsumer) -> None:
    """Make the consumer's `stop()` leave out the LeaveGroup request: the group drops this
    member after its session timeout instead."""
    coordinator = getattr(consumer, COORDINATOR)
    if coordinator is None:
        return

    async def stay() -> None:
        coordinator.reset_generation()

    setattr(coordinator, LEAVE, stay)


def missing_internals(consumer: Any) -> list[str]:
    """What of the above the installed aiokafka lacks, each named (empty when all is there).

    `consumer` is an AIOKafkaConsumer constructed (not started) in a running loop.
    """
    missing = []
    if COORDINATOR not in vars(consumer):
        missing.append(f"AIOKafkaConsumer.{COORDINATOR} (instance attribute)")
    for name, is_coroutine in METHODS.items():
        method = getattr(GroupCoordinator, name, None)
        where = f"GroupCoordinator.{name}"
        if method is None:
            missing.append(f"{where} (method)")
        elif list(inspect.signature(method).parameters) != ["self"]:
            missing.append(f"{where}(self): now {inspect.signature(method)}")
        elif inspect.iscoroutinefunction(method) != is_coroutine:
            kind = "a coroutine function" if is_coroutine else "a plain method"
            missing.append(f"{where}: no longer {kind}")
    for owner, method, call in (
        (AIOKafkaConsumer, "stop", f"self.{COORDINATOR}.close()"),
        (GroupCoordinator, "close", f"self.{LEAVE}()"),
    ):
        code = getattr(owner, method, None)
        if code is None or call not in inspect.getsource(code):
            missing.append(f"{owner.__name__}.{method} calling {call}")
    return missing
