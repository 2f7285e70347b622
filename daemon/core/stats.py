"""What a candidate learns from its sessions and its line.

- The conversion prior (`conversion` mode; candidate.py's module docstring): the candidate's
  mean rate, weakly anchored at DEFAULT_PRIOR by PRIOR_SESSIONS pseudo-sessions
  (`current_prior`), and the strength M of the Beta prior an agent's observed rate is
  shrunk toward it with (`shrunk`). Both are kept as of their last re-read (`move_prior`:
  when either moves by more than PRIOR_DRIFT), from the members' sessions and conversions
  (`sessions_sum`, `converted_sum`).
- The handle time H, the mean session duration (`handle_time_ms`): an EWMA of observed
  durations, blended with `queue.avg_handle_time` until SEED_SESSIONS sessions have ended.
- Who stays in line: the share of the line's buyers served rather than gone (`stay`, an
  EWMA over queue exits), and when they give up (`patience`, daemon/core/patience.py).

All of it is learned state, checkpointed with the candidate (`candidate.runtime_of`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daemon.core.patience import Survival, new_patience, observe

SEED_SESSIONS = 20  # ended sessions before the observed handle time is trusted alone
HANDLE_EWMA = 0.1  # weight of each new session duration in the observed handle time
STAY_EWMA = 0.05  # weight of each queue exit in the share of buyers who stay until served
PRIOR_SESSIONS = 20.0  # pseudo-sessions anchoring a candidate's mean at DEFAULT_PRIOR
MIN_STRENGTH = 10.0  # least pseudo-sessions pulling an agent's observed rate to the mean
MAX_STRENGTH = 50.0  # most (no spread between agents beyond binomial noise)
DEFAULT_PRIOR = 0.1  # assumed conversion before a candidate has any data
PRIOR_DRIFT = 0.1  # relative change of the candidate mean that triggers a re-rank


class Stats:
    """One candidate's learned statistics; see the module docstring."""

    __slots__ = (
        "converted_sum",
        "handle_ewma",
        "handle_n",
        "patience",
        "prior_strength",
        "prior_used",
        "sessions_sum",
        "stay",
        "survival",
    )

    def __init__(self) -> None:
        self.prior_used = DEFAULT_PRIOR
        self.prior_strength = MAX_STRENGTH  # pseudo-sessions of the Beta prior
        self.sessions_sum = 0  # sessions the members started (their `sessions_total`)
        self.converted_sum = 0
        self.handle_ewma = 0.0
        self.handle_n = 0
        self.stay = 1.0  # share of this line's buyers served rather than gone
        self.patience: list[float] = new_patience()  # when they give up
        self.survival: Survival | None = None  # `patience` read (derived: None after a change)

    # ------------------------------------------------------------------------ conversion

    def started(self) -> None:
        """A member agent started a session."""
        self.sessions_sum += 1

    def converted(self) -> None:
        """A member agent's session converted."""
        self.converted_sum += 1

    def recount(self, sessions: int, converted: int) -> None:
        """The members' sessions and conversions, counted again from their rows."""
        self.sessions_sum = sessions
        self.converted_sum = converted

    def current_prior(self) -> float:
        """The candidate's mean conversion rate, weakly anchored at DEFAULT_PRIOR."""
        return (self.converted_sum + PRIOR_SESSIONS * DEFAULT_PRIOR) / (
            self.sessions_sum + PRIOR_SESSIONS
        )

    def move_prior(self, prior: float, strength: float) -> bool:
        """Take the mean `prior` and the strength if either moved by more than PRIOR_DRIFT
        since last taken; whether they were taken (the agents' ranks then move)."""
        if (
            abs(prior - self.prior_used) <= PRIOR_DRIFT * self.prior_used
            and abs(strength - self.prior_strength) <= PRIOR_DRIFT * self.prior_strength
        ):
            return False
        self.prior_used = prior
        self.prior_strength = strength
        return True

    def shrunk(self, converted: int, sessions: int) -> float:
        """Posterior mean of an observed rate under the candidate's Beta prior."""
        strength = self.prior_strength
        return (converted + strength * self.prior_used) / (sessions + strength)

    # ------------------------------------------------------------------ handle time, line

    def observe_session(self, duration_ms: int) -> None:
        """Feed one ended session's duration into the handle-time estimate."""
        if self.handle_n == 0:
            self.handle_ewma = float(duration_ms)
        else:
            self.handle_ewma += HANDLE_EWMA * (duration_ms - self.handle_ewma)
        self.handle_n += 1

    def handle_time_ms(self, seed_ms: int) -> float:
        """Mean session duration: observed, blended with the seed until enough data."""
        weight = min(self.handle_n, SEED_SESSIONS) / SEED_SESSIONS
        return weight * self.handle_ewma + (1.0 - weight) * seed_ms

    def observe_exit(self, served: bool, waited_ms: int, left: bool) -> None:
        """Feed one exit from the line after `waited_ms` in it: served, or gone (`left`:
        gave up; else expired or overflowed)."""
        self.stay += STAY_EWMA * (float(served) - self.stay)
        observe(self.patience, waited_ms, left)
        self.survival = None

    def read_patience(self) -> Survival:
        """`patience` read for the estimates, kept until the next exit changes it."""
        survival = self.survival
        if survival is None:
            survival = self.survival = Survival(self.patience)
        return survival

    # ----------------------------------------------------------------------- learned state

    def learned(self) -> dict[str, object]:
        """The statistics as plain data."""
        return {
            "prior_used": self.prior_used,
            "prior_strength": self.prior_strength,
            "sessions_sum": self.sessions_sum,
            "converted_sum": self.converted_sum,
            "handle_ewma": self.handle_ewma,
            "handle_n": self.handle_n,
            "stay": self.stay,
            "patience": list(self.patience),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take the statistics `learned` gave (a missing field keeps its default)."""
        self.prior_used = data.get("prior_used", self.prior_used)
        self.prior_strength = data.get("prior_strength", self.prior_strength)
        self.sessions_sum = data.get("sessions_sum", self.sessions_sum)
        self.converted_sum = data.get("converted_sum", self.converted_sum)
        self.handle_ewma = data.get("handle_ewma", self.handle_ewma)
        self.handle_n = data.get("handle_n", self.handle_n)
        self.stay = data.get("stay", self.stay)
        if "patience" in data:
            self.patience = [float(v) for v in data["patience"]]
        self.survival = None
