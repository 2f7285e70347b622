"""`fenliu dead-letter replay`'s pure part: which dead letters are selected, where each record
goes (murmur2 home partition of its source topic), which are still invalid and why, what is
skipped, the summary it prints, and which dead letters hold only an excerpt and are replayed
from their record fetched from its source (daemon.tools.dead_letter)."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from daemon.cli import build_parser
from daemon.service.kafka import home_partition
from daemon.tools.dead_letter import (
    Plan,
    cut_sources,
    kind_of,
    parse_since,
    plan_replay,
    summary,
)
from topics.codec import TopicKind, encode, rejected_for
from topics.events import BuyerInquired, InquiryContext, RejectKind

INQ = "fenliu.inquiries"
INPUTS = {INQ: TopicKind.INQUIRIES, "fenliu.agent-status": TopicKind.AGENT_STATUS}
COUNTS = {INQ: 8, "fenliu.agent-status": 8}
SHOPS = {"s1", "s2"}


def _inquiry(shop: str, n: int) -> bytes:
    return encode(BuyerInquired(f"inq-{shop}-{n}", shop, 1000 + n, f"b-{shop}-{n}"))


def _letter(
    value: bytes, kind: RejectKind, *, shop: str = "s1", offset: int = 0, part: int = 3
) -> bytes:
    event = rejected_for(
        "why", source_topic=INQ, partition=part, offset=offset, value=value,
        key=shop.encode(), now_ms=5, kind=kind,
    )  # fmt: skip
    return encode(event)


def _plan(values: list[bytes | None], kinds: set[str] | None = None) -> Plan:
    return plan_replay(values, kinds=kinds or set(), inputs=INPUTS, partitions=COUNTS, shops=SHOPS)


def test_selected_records_go_to_their_source_topic_on_the_murmur2_home_partition() -> None:
    value = _inquiry("s2", 1)
    plan = _plan([_letter(value, "misrouted", shop="s2", part=6)])
    (resend,) = plan.resend
    assert (resend.topic, resend.partition) == (INQ, home_partition(b"s2", 8))
    assert (resend.key, resend.value, resend.event_id) == (b"s2", value, "inq-s2-1")
    assert resend.source == f"rej:{INQ}:6:0"
    assert (plan.read, plan.selected, plan.still_invalid) == (1, 1, [])


@pytest.mark.parametrize(
    ("kinds", "selected"),
    [
        (set(), 4),
        ({"misrouted"}, 2),
        ({"misrouted", "unknown_shop"}, 3),
        ({"refused"}, 0),
    ],
)
def test_reason_kinds_select_the_dead_letters(kinds: set[str], selected: int) -> None:
    letters = [
        _letter(_inquiry("s1", 1), "misrouted", offset=1),
        _letter(_inquiry("s1", 2), "misrouted", offset=2),
        _letter(_inquiry("s2", 3), "unknown_shop", shop="s2", offset=3),
        _letter(b"{", "invalid", offset=4),
    ]
    plan = _plan(letters, kinds)
    assert (plan.read, plan.selected) == (4, selected)
    assert sum(plan.skipped.values()) == 4 - selected


def test_still_invalid_records_are_reported_with_why_and_not_sent() -> None:
    plan = _plan(
        [
            _letter(b'{"type":"inquiry"}', "invalid", offset=1),
            _letter(_inquiry("s9", 1), "unknown_shop", shop="s9", offset=2),
            _letter(b"\xff\xfe", "invalid", offset=3),
        ]
    )
    assert plan.resend == []
    whys = {bad.source: bad.why for bad in plan.still_invalid}
    assert whys[f"rej:{INQ}:3:2"] == "shop 's9' is still not configured"
    assert "missing" in whys[f"rej:{INQ}:3:1"]
    assert whys[f"rej:{INQ}:3:3"]  # base64 raw, decoded, still not JSON: says why


def test_each_record_is_sent_at_most_once_per_replay() -> None:
    value = _inquiry("s1", 1)
    again = _letter(value, "misrouted", offset=7)  # the same dead letter written twice
    retried = _letter(value, "misrouted", offset=8)  # the producer's retry: same event id
    plan = _plan([again, again, retried])
    assert [r.source for r in plan.resend] == [f"rej:{INQ}:3:7"]
    assert plan.skipped == {
        "the same record dead-lettered again": 1,
        "an event id already re-sent": 1,
    }


def test_a_non_utf8_value_is_restored_from_base64() -> None:
    letter = orjson.loads(_letter(b"\xff", "invalid"))
    assert letter["raw_encoding"] == "base64"
    letter["raw"] = base64.b64encode(_inquiry("s1", 4)).decode()
    (resend,) = _plan([orjson.dumps(letter)]).resend
    assert resend.value == _inquiry("s1", 4)


def test_other_records_in_the_topic_are_skipped_as_not_rejected_events() -> None:
    plan = _plan([None, b"nope", b'{"type":"assignment"}'])
    assert (plan.read, plan.selected) == (3, 0)
    assert plan.skipped == {"not a rejected event": 3}


def test_a_source_topic_no_longer_configured_is_still_invalid() -> None:
    letter: dict[str, Any] = orjson.loads(_letter(_inquiry("s1", 1), "misrouted"))
    letter["source_topic"] = "old.inquiries"
    (bad,) = _plan([orjson.dumps(letter)]).still_invalid
    assert "old.inquiries is not an input topic" in bad.why


def test_older_dead_letters_without_reason_are_told_by_their_sentence() -> None:
    misrouted = {"error": "shop 's1' belongs on partition 5 of t, found on 2: ..."}
    assert kind_of(misrouted) == "misrouted"
    assert kind_of({"error": "shop_id 'x' is not configured"}) == "unknown_shop"
    assert kind_of({"error": "field 'buyer_id' is missing"}) is None
    assert kind_of({"reason": "refused", "error": "is not configured"}) == "refused"


def test_summary_counts_every_outcome_and_names_each_still_invalid_record() -> None:
    plan = _plan(
        [
            _letter(_inquiry("s1", 1), "misrouted", offset=1),
            _letter(_inquiry("s9", 1), "unknown_shop", shop="s9", offset=2),
            _letter(b"{", "invalid", offset=3),
        ],
        {"misrouted", "unknown_shop"},
    )
    lines = summary(plan, dead_letter_topic="fenliu.dead-letter", dry_run=False)
    assert lines == [
        "read 3 from fenliu.dead-letter",
        "selected 2",
        "re-sent 1",
        "still invalid 1",
        f"  rej:{INQ}:3:2: shop 's9' is still not configured",
        "skipped 1",
        "  1 reason invalid not selected",
    ]
    dry = summary(plan, dead_letter_topic="fenliu.dead-letter", dry_run=True)
    part = home_partition(b"s1", 8)
    assert dry[2:4] == [f"  rej:{INQ}:3:1 -> {INQ} partition {part}", "would re-send 1"]


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1763861461000", 1763861461000),
        ("2025-11-23T01:31:01Z", 1763861461000),
        ("2025-11-23T01:31:01", 1763861461000),
        ("2025-11-23T09:31:01+08:00", 1763861461000),
    ],
)
def test_since_takes_iso_8601_or_epoch_milliseconds(text: str, ms: int) -> None:
    assert parse_since(text) == ms


def test_since_that_is_no_time_is_refused() -> None:
    with pytest.raises(ValueError, match="neither an ISO 8601 time nor epoch milliseconds"):
        parse_since("yesterday")


def test_the_command_line_parses_reasons_and_refuses_unknown_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser().parse_args(
        ["dead-letter", "replay", "--config", "f.toml", "--reason", "misrouted", "invalid"]
    )
    assert (args.reason, args.dry_run, args.since) == (["misrouted", "invalid"], False, None)
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["dead-letter", "replay", "--config", "f", "--reason", "x"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_bad_config_or_since_exits_2(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from daemon.cli import main

    missing = tmp_path / "missing.toml"
    assert main(["dead-letter", "replay", "--config", str(missing)]) == 2
    assert main(["dead-letter", "replay", "--config", str(missing), "--since", "x"]) == 2
    assert "--since" in capsys.readouterr().err


# --------------------------------------------- dead letters that hold only an excerpt


def _big_inquiry(shop: str, n: int) -> bytes:
    """A valid inquiry of about 26 KB: more than a dead letter keeps, less than 64 KiB."""
    context = InquiryContext(crowd=tuple(f"{i:03}" + "t" * 120 for i in range(200)))
    value = encode(BuyerInquired(f"inq-{shop}-{n}", shop, 1000 + n, f"b-{shop}-{n}", context))
    assert 16_384 < len(value) < 65_536
    return value


def test_a_cut_dead_letter_is_replayed_from_its_record_fetched_from_the_source() -> None:
    value = _big_inquiry("s1", 1)
    letter = _letter(value, "unknown_shop", offset=5)
    assert orjson.loads(letter)["raw_truncated"] is True
    assert cut_sources([letter, _letter(_inquiry("s1", 2), "misrouted")], kinds=set()) == {
        (INQ, 3, 5)
    }
    assert cut_sources([letter], kinds={"misrouted"}) == set()
    plan = plan_replay(
        [letter], kinds=set(), inputs=INPUTS, partitions=COUNTS, shops=SHOPS,
        originals={(INQ, 3, 5): (b"s1", value)},
    )  # fmt: skip
    (resend,) = plan.resend
    assert (resend.key, resend.value, resend.event_id) == (b"s1", value, "inq-s1-1")


def test_a_cut_dead_letter_whose_record_is_gone_or_another_is_not_sent() -> None:
    letter = _letter(_big_inquiry("s1", 1), "unknown_shop", offset=5)
    gone = _plan([letter])
    assert gone.resend == []
    assert "holds only an excerpt, and the record is no longer in" in gone.still_invalid[0].why
    other = plan_replay(
        [letter], kinds=set(), inputs=INPUTS, partitions=COUNTS, shops=SHOPS,
        originals={(INQ, 3, 5): (b"s1", _big_inquiry("s1", 2))},
    )  # fmt: skip
    assert other.resend == []
    assert "is not the one dead-lettered (its value differs)" in other.still_invalid[0].why


def test_a_cut_key_is_checked_against_the_records_key() -> None:
    key = b"s1" * 1_000
    event = rejected_for(
        "why", source_topic=INQ, partition=3, offset=9, value=_inquiry("s1", 1), key=key,
        now_ms=5, kind="invalid",
    )  # fmt: skip
    assert event.key_truncated
    letter = encode(event)
    assert cut_sources([letter], kinds=set()) == {(INQ, 3, 9)}
    originals = {(INQ, 3, 9): (b"s2" * 1_000, _inquiry("s1", 1))}
    (bad,) = plan_replay(
        [letter], kinds=set(), inputs=INPUTS, partitions=COUNTS, shops=SHOPS, originals=originals
    ).still_invalid
    assert bad.why.endswith("(its key differs)")
    originals = {(INQ, 3, 9): (key, _inquiry("s1", 1))}
    (still,) = plan_replay(
        [letter], kinds=set(), inputs=INPUTS, partitions=COUNTS, shops=SHOPS, originals=originals
    ).still_invalid
    assert "record key" in still.why, "the whole key, fetched, still differs from shop_id"
