"""The core's exceptions (a module of their own: the compiled core cannot subclass builtin
exception types other than Exception, so they stay Python classes; see compiled.py)."""

from __future__ import annotations

from topics.events import OutputEvent


class ImpossibleTransition(RuntimeError):
    """The engine tried a state change its transition table does not allow."""


class EventRejected(ValueError):
    """An input event the shop refuses; `reason` is a sentence for the dead-letter topic."""

    def __init__(self, reason: str, outputs: list[OutputEvent] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outputs: list[OutputEvent] = outputs or []
