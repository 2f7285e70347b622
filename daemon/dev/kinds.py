"""The kinds of simulated buyer of `fenliu dev` and `fenliu demo`: one per group that some
one-value inquiry context reaches, and UNMATCHED for the unmatched pool. Which contexts reach
which group is the lab's `matching_contexts` (daemon.lab.world), written once for both."""

from __future__ import annotations

from daemon.core.config import ShopConfig
from daemon.lab.world import matching_contexts
from topics.events import InquiryContext

UNMATCHED = "unmatched"


def contexts_by_kind(shop: ShopConfig) -> dict[str, tuple[InquiryContext, ...]]:
    """For each group, the inquiry contexts its match rules catch; UNMATCHED: the pool's."""
    return {
        UNMATCHED if group is None else group: contexts
        for group, contexts in matching_contexts(shop).items()
    }
