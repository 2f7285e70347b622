"""What one group's replies add up to (contract §3.6): the figures a shop reports live.

A reply is the agent's first message after a buyer's: its **reply time** is how long the
buyer's reply clock ran (`daemon/core/sessions.py` starts and stops the clocks). Each group's
candidate keeps, at a flat cost per reply and per read (no list of replies, no scan):

- the distribution of reply times, as fixed buckets (`REPLY_BUCKETS_MS`, Prometheus-style:
  a count per bucket, cumulative when read, with the sum and the count);
- replies, and replies within the shop's `deadline`, over the last hour: a ring of
  per-minute counters (`HOUR_MINUTES` slots) advanced by the shop's clock when a reply comes,
  read as the current minute and the 59 before it;
- reassignments by reason (`reassigned`: `Sessions` counts the moves of `reassign_after`).

All of it is learned state, checkpointed with the candidate (`candidate.runtime_of`), so a
restart or a partition move goes on counting where it was. Buyers overdue now are not here:
they follow from the open sessions, which `Sessions` counts per group (`overdue_by_group`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from typing import Any

REPLY_BUCKETS_MS: tuple[int, ...] = (
    10_000, 30_000, 60_000, 100_000, 120_000, 180_000, 300_000, 600_000,
)  # fmt: skip
"""Upper bounds of the reply-time buckets (a reply of exactly a bound counts in it), around
the defaults of `warn_after` (100 s) and `deadline` (3 m); one more bucket holds the rest."""
MINUTE_MS = 60_000
HOUR_MINUTES = 60
REASSIGN_REASONS = ("unanswered",)  # why a buyer is moved to another agent (contract §1.3)


class ReplyFigures:
    """One group's reply figures; see the module docstring."""

    __slots__ = (
        "hist",
        "hist_sum_ms",
        "reassigned",
        "ring_minute",
        "ring_replies",
        "ring_totals",
        "ring_within",
    )

    def __init__(self) -> None:
        self.hist = [0] * (len(REPLY_BUCKETS_MS) + 1)  # replies per bucket; the last: longer
        self.hist_sum_ms = 0
        # the ring: slot m % HOUR_MINUTES counts the replies of minute m (epoch ms // MINUTE_MS)
        # for the HOUR_MINUTES minutes up to `ring_minute`, the newest with a reply
        self.ring_minute = 0
        self.ring_replies = [0] * HOUR_MINUTES
        self.ring_within = [0] * HOUR_MINUTES
        self.ring_totals = [0, 0]  # the ring's replies and within, summed (`last_hour`)
        self.reassigned: dict[str, int] = {}  # reason -> buyers moved for it

    def observe(self, reply_ms: int, within: bool, now: int) -> None:
        """Count one reply of `reply_ms` at `now` (`within`: the deadline was kept)."""
        self.hist[bisect_left(REPLY_BUCKETS_MS, reply_ms)] += 1
        self.hist_sum_ms += reply_ms
        minute = now // MINUTE_MS
        newest = self.ring_minute
        if minute > newest:  # the slots of the minutes since the newest start again
            self.ring_totals = list(self._since(minute))
            for m in range(max(newest + 1, minute - HOUR_MINUTES + 1), minute + 1):
                self.ring_replies[m % HOUR_MINUTES] = 0
                self.ring_within[m % HOUR_MINUTES] = 0
            self.ring_minute = minute
        elif minute <= newest - HOUR_MINUTES:
            return  # the shop's clock never goes back: not reached
        slot = minute % HOUR_MINUTES
        self.ring_replies[slot] += 1
        self.ring_totals[0] += 1
        if within:
            self.ring_within[slot] += 1
            self.ring_totals[1] += 1

    def last_hour(self, now: int) -> tuple[int, int]:
        """Replies, and replies within the deadline, in the minute of `now` and the 59 before:
        the ring's totals less the minutes that left the hour since its newest (a read costs
        the minutes since the last reply, at most an hour's, not the hour's 60)."""
        minute = now // MINUTE_MS
        if minute < self.ring_minute:  # a read of the past: not reached (the clock only goes on)
            replies = within = 0
            for m in range(minute - HOUR_MINUTES + 1, minute + 1):
                if m > self.ring_minute - HOUR_MINUTES:
                    replies += self.ring_replies[m % HOUR_MINUTES]
                    within += self.ring_within[m % HOUR_MINUTES]
            return replies, within
        return self._since(minute)

    def _since(self, minute: int) -> tuple[int, int]:
        """The ring's totals for the hour up to `minute` (at or after its newest)."""
        newest = self.ring_minute
        if minute - newest >= HOUR_MINUTES:
            return 0, 0
        replies, within = self.ring_totals
        for m in range(newest - HOUR_MINUTES + 1, minute - HOUR_MINUTES + 1):  # gone by then
            replies -= self.ring_replies[m % HOUR_MINUTES]
            within -= self.ring_within[m % HOUR_MINUTES]
        return replies, within

    def cumulative(self) -> list[int]:
        """Replies at or below each bound of `REPLY_BUCKETS_MS`, then all of them (+Inf)."""
        total, out = 0, []
        for count in self.hist:
            total += count
            out.append(total)
        return out

    def count_reassigned(self, reason: str) -> None:
        """A buyer of the group was moved to another agent for `reason`."""
        self.reassigned[reason] = self.reassigned.get(reason, 0) + 1

    # ----------------------------------------------------------------------- learned state

    def learned(self) -> dict[str, object]:
        """The figures as plain data: the ring as [minutes before the newest, replies,
        within] for its non-empty minutes."""
        newest = self.ring_minute
        ring = []
        for age in range(HOUR_MINUTES):
            slot = (newest - age) % HOUR_MINUTES
            if self.ring_replies[slot]:
                ring.append([age, self.ring_replies[slot], self.ring_within[slot]])
        return {
            "hist": list(self.hist),
            "sum_ms": self.hist_sum_ms,
            "minute": newest,
            "ring": ring,
            "reassigned": dict(self.reassigned),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take the figures `learned` gave (missing: none counted yet, as when a version
        before the reply clocks wrote the checkpoint)."""
        hist = [int(n) for n in data.get("hist", ())]
        if len(hist) == len(self.hist):  # other buckets: start counting afresh
            self.hist = hist
            self.hist_sum_ms = int(data.get("sum_ms", 0))
        newest = self.ring_minute = int(data.get("minute", 0))
        self.ring_replies = [0] * HOUR_MINUTES
        self.ring_within = [0] * HOUR_MINUTES
        for age, replies, within in data.get("ring", ()):
            slot = (newest - age) % HOUR_MINUTES
            self.ring_replies[slot], self.ring_within[slot] = replies, within
        self.ring_totals = [sum(self.ring_replies), sum(self.ring_within)]
        self.reassigned = {str(k): int(v) for k, v in data.get("reassigned", {}).items()}
