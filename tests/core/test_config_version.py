"""Every decision names the configuration that made it (contract §1.3): `config` on each
output is the shop file's version, a short hash of its effective settings."""

from __future__ import annotations

import tomllib

from daemon.core.config import ShopConfig
from daemon.core.engine import Engine
from tests.scenario import SHOP, shop
from topics.events import AgentStatus, AgentStatusChanged, BuyerInquired, InquiryContext

T0 = 1_700_000_000_000


def _inquiry(n: int, now: int) -> BuyerInquired:
    return BuyerInquired(f"i{n}", SHOP, now, f"b{n}", InquiryContext(), 0)


def test_outputs_carry_the_version_in_force_and_a_reload_changes_it() -> None:
    before, after = shop(["a1"]), shop(["a1"], busy_threshold=9)
    assert before.version != after.version
    assert len(before.version) == 12 and int(before.version, 16) >= 0
    engine = Engine({SHOP: before})
    engine.handle(AgentStatusChanged("s1", SHOP, T0, "a1", AgentStatus.ONLINE), T0)
    first = engine.handle(_inquiry(1, T0), T0)
    reloaded = engine.reconfigure({SHOP: after}, T0 + 1)
    second = engine.handle(_inquiry(2, T0 + 2), T0 + 2)
    assert [o.config for o in first] == [before.version]  # type: ignore[union-attr]
    assert [o.config for o in reloaded + second] == [after.version]  # type: ignore[union-attr]


def test_the_version_is_of_the_effective_settings_not_the_text() -> None:
    text = 'id = "s"\n[[agents]]\nid = "a"\n[[groups]]\nname = "g"\nagents = ["a"]\n'
    laid_out = '# a comment\nid   = "s"\n\n[[agents]]\nid = "a"\n\n[[groups]]\nname = "g"\n'
    laid_out += 'agents = [ "a" ]  # one\n'
    defaults = text.replace('id = "s"\n', 'id = "s"\nmode = "efficiency"\nbusy_threshold = 4\n')
    versions = {ShopConfig.model_validate(tomllib.loads(t)).version for t in (text, laid_out)}
    assert versions == {ShopConfig.model_validate(tomllib.loads(defaults)).version}
    changed = text.replace('id = "a"', 'id = "a"\nweight = 2.0')
    assert ShopConfig.model_validate(tomllib.loads(changed)).version not in versions


def test_a_setting_counts_in_the_version_only_once_set_to_other_than_its_default() -> None:
    """Settings at their defaults are left out (whether written or not), so a setting that
    a later Fenliu brings, such as `queue.priority_aging`, changes no shop's version until a
    shop sets it."""
    text = 'id = "s"\n[[agents]]\nid = "a"\n[[groups]]\nname = "g"\nagents = ["a"]\n'
    plain = ShopConfig.model_validate(tomllib.loads(text))
    off = ShopConfig.model_validate(tomllib.loads(text + "[queue]\npriority_aging = 0\n"))
    aged = ShopConfig.model_validate(tomllib.loads(text + '[queue]\npriority_aging = "2m"\n'))
    assert plain.version == off.version != aged.version
    table = '[replies]\ndeadline = "3m"\nwarn_after = 100\nreassign_after = 0\n'
    replies = ShopConfig.model_validate(tomllib.loads(text + table + "overdue_is_busy = true\n"))
    stricter = ShopConfig.model_validate(tomllib.loads(text + '[replies]\ndeadline = "2m"\n'))
    assert plain.version == replies.version != stricter.version
    written = text.replace('id = "a"', 'id = "a"\nweight = 1.0\nlevel = 3')
    assert ShopConfig.model_validate(tomllib.loads(written)).version == plain.version
