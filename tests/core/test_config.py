"""Loading fenliu.toml and shop files: typed config, and problems named by file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from daemon.config import (
    ConfigError,
    ConfigProblem,
    FenliuConfig,
    KafkaConfig,
    RedisConfig,
    check_config_command,
    load_config,
    load_shop_file,
)
from daemon.config.problems import validate
from daemon.core.config import format_duration_ms, parse_duration_ms
from topics.events import Mode

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "fenliu.toml"

DAEMON = """
[kafka]
bootstrap_servers = "127.0.0.1:9092"

[redis]
url = "redis://127.0.0.1:6379/0"
"""

SHOP = """
id = "s1"

[[agents]]
id = "a1"

[[agents]]
id = "a2"

[[groups]]
name = "g"
agents = ["a1", "a2"]
"""


def write(tmp_path: Path, daemon: str = DAEMON, **shops: str) -> Path:
    """A fenliu.toml in tmp_path with the given shop files (name -> TOML) in shops/."""
    (tmp_path / "shops").mkdir(exist_ok=True)
    for name, text in shops.items():
        (tmp_path / "shops" / f"{name}.toml").write_text(text, encoding="utf-8")
    path = tmp_path / "fenliu.toml"
    path.write_text(daemon, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


def shop_problems(tmp_path: Path, text: str) -> list[str]:
    """Problems of a config whose only shop file is `text`, with the file prefix removed."""
    path = write(tmp_path, s1=text)
    prefix = f"{tmp_path / 'shops' / 's1.toml'}: "
    found = problems(path)
    assert all(p.startswith(prefix) for p in found), found
    return [p.removeprefix(prefix) for p in found]


# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (0, 0),
        (90, 90_000),
        ("90", 90_000),
        ("90s", 90_000),
        ("10m", 600_000),
        ("72h", 259_200_000),
        ("1d", 86_400_000),
        ("1h30m", 5_400_000),
        ("1h 30m", 5_400_000),
        ("1.5s", 1_500),
        ("250ms", 250),
    ],
)
def test_duration_accepts_seconds_and_unit_strings(value: object, ms: int) -> None:
    assert parse_duration_ms(value) == ms


@pytest.mark.parametrize("value", ["10x", "", "m10", "-5s", "10 minutes", "1h30", -1, True, 1.5])
def test_duration_rejects_anything_else_with_a_sentence(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_ms(value)


def test_bad_duration_in_a_shop_names_the_key_and_the_value(tmp_path: Path) -> None:
    text = SHOP.replace('id = "s1"', 'id = "s1"\nsticky_window = "3days"')
    assert shop_problems(tmp_path, text) == [
        "sticky_window: '3days' is not a duration: use seconds as an integer or a string "
        "such as '90s', '10m', '72h', '1d' or '1h30m'"
    ]


def test_durations_are_stored_as_milliseconds(tmp_path: Path) -> None:
    text = SHOP.replace('id = "s1"', 'id = "s1"\n[queue]\nsession_timeout = 90\nmax_wait = "1h30m"')
    shop = load_shop_file(write(tmp_path, s1=text).parent / "shops" / "s1.toml")
    assert (shop.queue.session_timeout, shop.queue.max_wait) == (90_000, 5_400_000)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("-60", "a duration cannot be negative (got -60)"),
        ('"-2m"', "'-2m' is not a duration: use seconds as an integer or a string such as "
         "'90s', '10m', '72h', '1d' or '1h30m'"),
        ("true", "a duration is an integer number of seconds or a string like '10m' (got true)"),
    ],
)  # fmt: skip
def test_a_negative_or_malformed_priority_aging_is_refused_under_its_key(
    tmp_path: Path, value: str, problem: str
) -> None:
    text = SHOP.replace('id = "s1"', f'id = "s1"\n[queue]\npriority_aging = {value}')
    assert shop_problems(tmp_path, text) == [f"queue.priority_aging: {problem}"]


def test_priority_aging_is_off_by_default_and_read_as_a_duration(tmp_path: Path) -> None:
    path = write(tmp_path, s1=SHOP).parent / "shops" / "s1.toml"
    assert load_shop_file(path).queue.priority_aging == 0
    path.write_text(SHOP.replace('id = "s1"', 'id = "s1"\n[queue]\npriority_aging = "2m"'))
    assert load_shop_file(path).queue.priority_aging == 120_000


def test_replies_default_to_three_minutes_warned_at_100s_reassigning_off_overdue_busy(
    tmp_path: Path,
) -> None:
    """contract §3.6: `[replies]` is optional; its durations read like the others."""
    path = write(tmp_path, s1=SHOP).parent / "shops" / "s1.toml"
    r = load_shop_file(path).replies
    assert (r.deadline, r.warn_after, r.reassign_after, r.overdue_is_busy) == (
        180_000, 100_000, 0, True,
    )  # fmt: skip
    table = '[replies]\ndeadline = "2m"\nwarn_after = 90\nreassign_after = "100s"\n'
    path.write_text(SHOP.replace('id = "s1"', f'id = "s1"\n{table}overdue_is_busy = false'))
    r = load_shop_file(path).replies
    assert (r.deadline, r.warn_after, r.reassign_after, r.overdue_is_busy) == (
        120_000, 90_000, 100_000, False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("deadline = 0", "replies.deadline: must be longer than 0s (got 0)"),
        ("warn_after = 0", "replies.warn_after: must be longer than 0s (got 0)"),
        ('deadline = "3 minutes"', "replies.deadline: '3 minutes' is not a duration: use "
         "seconds as an integer or a string such as '90s', '10m', '72h', '1d' or '1h30m'"),
        ("reassign_after = -1", "replies.reassign_after: a duration cannot be negative (got -1)"),
        ('overdue_is_busy = "maybe"',
         "replies.overdue_is_busy: must be true or false (got 'maybe')"),
        ("deadlines = 60", "replies.deadlines: unknown key (not part of the configuration); "
         "did you mean 'deadline'?"),
    ],
)  # fmt: skip
def test_a_bad_replies_setting_is_refused_under_its_key(
    tmp_path: Path, line: str, problem: str
) -> None:
    text = SHOP.replace('id = "s1"', f'id = "s1"\n[replies]\n{line}')
    assert shop_problems(tmp_path, text) == [problem]


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0s"), (250, "250ms"), (90_000, "1m30s"), (120_000, "2m"), (90_061_000, "1d1h1m1s")],
)
def test_durations_are_written_as_they_are_read(ms: int, text: str) -> None:
    assert format_duration_ms(ms) == text and parse_duration_ms(text) == ms


def test_zero_session_timeout_is_refused_under_its_own_key(tmp_path: Path) -> None:
    text = SHOP.replace('id = "s1"', 'id = "s1"\n[queue]\nsession_timeout = 0')
    assert shop_problems(tmp_path, text) == [
        "queue.session_timeout: must be longer than 0s (got 0)"
    ]


# --- one problem of each kind -------------------------------------------------------------


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    found = shop_problems(tmp_path, 'id = "s1"\n[[agents]\n')
    assert len(found) == 1
    assert found[0].startswith("(file): TOML syntax error: ")
    assert "line 2" in found[0]


def test_unknown_key_is_an_error_suggesting_the_likely_key(tmp_path: Path) -> None:
    text = SHOP.replace('id = "a2"', 'id = "a2"\nwieght = 2')
    assert shop_problems(tmp_path, text) == [
        "agents[1].wieght: unknown key (not part of the configuration); did you mean 'weight'?"
    ]


def test_unknown_key_in_fenliu_toml_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, DAEMON + 'password = "x"\n', s1=SHOP)
    assert problems(path) == [
        f"{path}: redis.password: unknown key (not part of the configuration)"
    ]


def test_wrong_type_says_what_type_is_expected(tmp_path: Path) -> None:
    text = SHOP + '\n[queue]\ndefault_cap = "five"\nenabled = "yes please"\n'
    assert shop_problems(tmp_path, text) == [
        "queue.enabled: must be true or false (got 'yes please')",
        "queue.default_cap: must be an integer (got 'five')",
    ]


def test_string_where_a_list_is_expected_is_refused(tmp_path: Path) -> None:
    text = SHOP + '[groups.match]\ncrowd = "vip"\n'
    assert shop_problems(tmp_path, text) == [
        'groups[0].match.crowd: must be a list, such as ["a", "b"] (got \'vip\')'
    ]


def test_unknown_mode_lists_the_allowed_modes(tmp_path: Path) -> None:
    text = SHOP.replace('id = "s1"', 'id = "s1"\nmode = "fastest"')
    assert shop_problems(tmp_path, text) == [
        "mode: must be one of 'average', 'weighted', 'efficiency' or 'conversion' (got 'fastest')"
    ]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("weight = 0", "agents[1].weight: must be greater than 0 (got 0)"),
        ("weight = -1.5", "agents[1].weight: must be greater than 0 (got -1.5)"),
        ("weight = inf", "agents[1].weight: must be a finite number (got inf)"),
        ("level = 0", "agents[1].level: must be at least 1 (got 0)"),
        ("level = 6", "agents[1].level: must be at most 5 (got 6)"),
        ("cap = 0", "agents[1].cap: must be at least 1 (got 0)"),
    ],
)
def test_out_of_range_agent_setting_names_agent_index_and_bound(
    tmp_path: Path, setting: str, message: str
) -> None:
    text = SHOP.replace('id = "a2"', f'id = "a2"\n{setting}')
    assert shop_problems(tmp_path, text) == [message]


def test_out_of_range_default_cap_is_refused(tmp_path: Path) -> None:
    text = SHOP + "\n[queue]\ndefault_cap = 0\n"
    assert shop_problems(tmp_path, text) == ["queue.default_cap: must be at least 1 (got 0)"]


def test_group_listing_an_unconfigured_agent_is_refused(tmp_path: Path) -> None:
    text = SHOP.replace('agents = ["a1", "a2"]', 'agents = ["a1", "a3"]')
    assert shop_problems(tmp_path, text) == [
        "groups[0].agents[1]: agent 'a3' is not configured in [[agents]]"
    ]


def test_overflow_to_an_unknown_group_is_refused(tmp_path: Path) -> None:
    text = SHOP + 'overflow_to = "nowhere"\n'
    assert shop_problems(tmp_path, text) == ["groups[0].overflow_to: no group is named 'nowhere'"]


def test_overflow_loop_is_refused(tmp_path: Path) -> None:
    text = (
        SHOP + 'overflow_to = "h"\n\n[[groups]]\nname = "h"\nagents = ["a2"]\noverflow_to = "g"\n'
    )
    assert shop_problems(tmp_path, text) == [
        "groups[0].overflow_to: overflow from 'g' loops back to 'g'"
    ]


def test_queue_groups_naming_an_unknown_group_is_refused(tmp_path: Path) -> None:
    text = SHOP.replace(
        'id = "s1"', 'id = "s1"\n[queue]\nenabled = true\nscope = "groups"\ngroups = ["g", "x"]'
    )
    assert shop_problems(tmp_path, text) == ["queue.groups[1]: no group is named 'x'"]


def test_queue_groups_without_scope_groups_is_refused(tmp_path: Path) -> None:
    text = SHOP.replace('id = "s1"', 'id = "s1"\n[queue]\nenabled = true\ngroups = ["g"]')
    [found] = shop_problems(tmp_path, text)
    assert found.startswith('queue.groups: is only used with scope = "groups"')


def test_duplicate_agent_id_is_refused(tmp_path: Path) -> None:
    text = SHOP.replace('id = "a2"', 'id = "a1"').replace('["a1", "a2"]', '["a1"]')
    assert shop_problems(tmp_path, text) == ["agents[1].id: agent 'a1' is configured twice"]


def test_shop_without_groups_is_refused(tmp_path: Path) -> None:
    text = SHOP.split("[[groups]]", maxsplit=1)[0]
    assert shop_problems(tmp_path, text) == [
        "groups: required key is missing: a shop has at least one [[groups]] table"
    ]


def test_group_without_agents_is_refused(tmp_path: Path) -> None:
    text = SHOP.replace('["a1", "a2"]', "[]")
    assert shop_problems(tmp_path, text) == ["groups[0].agents: a group needs at least one agent"]


def test_shop_without_id_is_refused(tmp_path: Path) -> None:
    text = SHOP.replace('id = "s1"', "")
    [found] = shop_problems(tmp_path, text)
    assert found.startswith("id: required key is missing")


def test_duplicate_shop_id_across_files_names_both_files(tmp_path: Path) -> None:
    path = write(tmp_path, a=SHOP, b=SHOP)
    assert problems(path) == [
        f"{tmp_path / 'shops' / 'b.toml'}: id: shop 's1' is also configured in "
        f"{tmp_path / 'shops' / 'a.toml'}"
    ]


def test_missing_shops_dir_is_reported_against_fenliu_toml(tmp_path: Path) -> None:
    path = write(tmp_path, DAEMON + '[shops]\ndir = "nope"\n')
    assert problems(path) == [f"{path}: shops.dir: folder {tmp_path / 'nope'} does not exist"]


def test_shops_dir_without_toml_files_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path)
    (tmp_path / "shops" / "README.md").write_text("not a shop")
    assert problems(path) == [
        f"{path}: shops.dir: folder {tmp_path / 'shops'} has no *.toml shop files"
    ]


def test_missing_fenliu_toml_is_one_problem(tmp_path: Path) -> None:
    assert problems(tmp_path / "fenliu.toml") == [
        f"{tmp_path / 'fenliu.toml'}: (file): file not found"
    ]


def test_missing_kafka_and_redis_tables_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "", s1=SHOP)
    assert problems(path) == [
        f"{path}: kafka: required key is missing",
        f"{path}: redis: required key is missing",
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('security_protocol = "TLS"', "kafka.security_protocol: must be one of 'PLAINTEXT', "),
        ('sasl_mechanism = "PLAIN"', "kafka.sasl_mechanism: is only used with security_protocol"),
        ('security_protocol = "SASL_SSL"', "kafka.sasl_mechanism: is required with"),
        ('[kafka.topics]\nmessages = "fenliu.inquiries"', "kafka.topics.messages: 'fenliu.inq"),
        ('[kafka.topics]\ndead_letter = "bad topic"', "kafka.topics.dead_letter: 'bad topic' is"),
    ],
)
def test_kafka_settings_are_checked(tmp_path: Path, extra: str, message: str) -> None:
    daemon = DAEMON.replace("[redis]", f"{extra}\n\n[redis]")
    path = write(tmp_path, daemon, s1=SHOP)
    assert problems(path)[0].startswith(f"{path}: {message}")


def test_fleet_settings_load_with_environment_expansion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[kafka] session_timeout, group_instance_id ("${VAR}" from the environment),
    leave_group and [redis] cluster (contract §5, 7)."""
    monkeypatch.setenv("FENLIU_TEST_HOST", "pod-7")
    daemon = DAEMON.replace(
        "[redis]",
        'session_timeout = "15s"\ngroup_instance_id = "fenliu-${FENLIU_TEST_HOST}"\n'
        "leave_group = false\n\n[redis]\ncluster = true",
    )
    config = load_config(write(tmp_path, daemon, s1=SHOP))
    assert config.kafka.session_timeout == 15_000
    assert config.kafka.group_instance_id == "fenliu-pod-7"
    assert config.kafka.leave_group is False and config.redis.cluster is True
    (tmp_path / "d").mkdir()
    defaults = load_config(write(tmp_path / "d", DAEMON, s1=SHOP))
    assert (defaults.kafka.session_timeout, defaults.kafka.group_instance_id) == (6000, None)
    assert defaults.kafka.leave_group is True and defaults.redis.cluster is False


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('group_instance_id = "f-${FENLIU_UNSET_VAR}"', "kafka.group_instance_id: uses "
         "environment variable FENLIU_UNSET_VAR, which is not set"),
        ('session_timeout = "500ms"', "kafka.session_timeout:"),
        ('session_timeout = "10m"', "kafka.session_timeout:"),
    ],
)  # fmt: skip
def test_fleet_settings_are_checked(tmp_path: Path, extra: str, message: str) -> None:
    daemon = DAEMON.replace("[redis]", f"{extra}\n\n[redis]")
    path = write(tmp_path, daemon, s1=SHOP)
    assert problems(path)[0].startswith(f"{path}: {message}")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[redis]\nurl = "http://127.0.0.1"', "redis.url: must start with redis://, rediss:// or"),
        ('[redis]\nurl = "redis://h"\nkey_prefix = "{x}"', "redis.key_prefix: must not contain"),
        ('[http]\nlisten = "9464"', "http.listen: '9464' is not host:port"),
        ('[http]\nlisten = "127.0.0.1:70000"', "http.listen: '127.0.0.1:70000' is not host:port"),
        ('[http]\nper_agent_metrics = "yes"', "http.per_agent_metrics: must be true or false"),
    ],
)
def test_redis_and_http_settings_are_checked(tmp_path: Path, table: str, message: str) -> None:
    daemon = DAEMON.replace('[redis]\nurl = "redis://127.0.0.1:6379/0"', table)
    if not table.startswith("[redis]"):
        daemon = DAEMON + table
    path = write(tmp_path, daemon, s1=SHOP)
    assert problems(path)[0].startswith(f"{path}: {message}")


def test_http_listen_splits_into_host_and_port() -> None:
    from daemon.config import HttpConfig

    assert (HttpConfig().host, HttpConfig().port) == ("127.0.0.1", 9464)
    v6 = HttpConfig(listen="[::1]:9000")
    assert (v6.host, v6.port) == ("::1", 9000)


# --- everything at once -------------------------------------------------------------------


def test_all_problems_of_all_files_are_reported_at_once(tmp_path: Path) -> None:
    bad_a = SHOP.replace('id = "a2"', 'id = "a2"\nlevel = 9').replace('"a1", "a2"]', '"a1", "zz"]')
    bad_b = SHOP.replace('id = "s1"', 'id = "s2"\nmode = "fast"')
    daemon = DAEMON.replace("[redis]", "group_id = 5\n\n[redis]")
    path = write(tmp_path, daemon, a=bad_a, b=bad_b, c="id = [\n")
    shops = tmp_path / "shops"
    found = problems(path)
    assert found[:4] == [
        f"{path}: kafka.group_id: must be a string (in quotes) (got 5)",
        f"{shops / 'a.toml'}: agents[1].level: must be at most 5 (got 9)",
        f"{shops / 'a.toml'}: groups[0].agents[1]: agent 'zz' is not configured in [[agents]]",
        f"{shops / 'b.toml'}: mode: must be one of 'average', 'weighted', 'efficiency' or "
        "'conversion' (got 'fast')",
    ]
    assert found[4].startswith(f"{shops / 'c.toml'}: (file): TOML syntax error:")
    assert len(found) == 5


def test_shop_files_are_checked_when_fenliu_toml_has_a_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[kafka\n", s1=SHOP.replace('id = "s1"', 'id = "s1"\nbusy = 1'))
    found = problems(path)
    assert found[0].startswith(f"{path}: (file): TOML syntax error:")
    assert found[1:] == [
        f"{tmp_path / 'shops' / 's1.toml'}: busy: unknown key (not part of the configuration)"
    ]


def test_wrong_list_items_are_reported_once_not_also_as_an_empty_list(tmp_path: Path) -> None:
    text = SHOP.replace('agents = ["a1", "a2"]', "agents = [1, 2]")
    assert shop_problems(tmp_path, text) == [
        "groups[0].agents[0]: must be a string (in quotes) (got 1)",
        "groups[0].agents[1]: must be a string (in quotes) (got 2)",
    ]


def test_config_error_prints_one_line_per_problem() -> None:
    problem = ConfigProblem(Path("shops/big.toml"), "agents[3].weight", "must be greater than 0")
    assert str(problem) == "shops/big.toml: agents[3].weight: must be greater than 0"
    assert str(ConfigError([problem, problem])) == f"{problem}\n{problem}"


# --- the example configuration ------------------------------------------------------------


def test_example_config_loads_with_absolute_paths_and_defaults() -> None:
    config = load_config(EXAMPLE)
    assert isinstance(config, FenliuConfig)
    assert config.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert config.kafka.group_id == "fenliu"
    assert config.kafka.topics.agent_status == "fenliu.agent-status"
    assert config.redis.url == "redis://127.0.0.1:6379/0"
    assert config.http.listen == "127.0.0.1:9464"
    assert config.shops.dir == REPO / "config" / "shops"
    assert list(config.shop_configs) == ["big", "presale", "small"]  # file name order
    assert config.shop_files["big"] == REPO / "config" / "shops" / "big.toml"


def test_example_small_shop_is_three_agents_one_group_average_no_queueing() -> None:
    small = load_config(EXAMPLE).shop_configs["small"]
    assert len(small.agents) == 3
    assert [g.name for g in small.groups] == ["all"]
    assert small.mode is Mode.AVERAGE
    assert not small.queue.enabled


def test_example_big_shop_has_the_festival_groups_and_queueing() -> None:
    big = load_config(EXAMPLE).shop_configs["big"]
    groups = {g.name: g for g in big.groups}
    assert list(groups) == ["vip", "presale", "aftersale", "general"]
    assert 28 <= len(big.agents) <= 32
    assert groups["vip"].match.crowd == ("vip",)
    assert groups["vip"].mode is Mode.EFFICIENCY and not groups["vip"].accept_unmatched
    assert groups["presale"].mode is Mode.CONVERSION
    assert groups["presale"].conversion_strength == "high"
    assert groups["presale"].match.intents == ("presale",) and groups["presale"].match.items
    assert groups["presale"].overflow_to == "general" and groups["presale"].accept_unmatched
    assert groups["aftersale"].match.order_status == ("paid_unshipped", "shipped")
    assert groups["aftersale"].match.intents == ("aftersale",)
    assert not groups["aftersale"].accept_unmatched
    assert groups["general"].mode is Mode.WEIGHTED and groups["general"].accept_unmatched
    q = big.queue
    assert (q.enabled, q.scope, q.default_cap) == (True, "shop", 5)
    assert (q.session_timeout, q.repeat_entry_window) == (600_000, 1_800_000)
    assert (q.avg_handle_time, q.max_wait, q.update_interval) == (300_000, 900_000, 10_000)
    members = [a for g in big.groups for a in g.agents]
    assert len(members) > len(set(members)), "some agents serve in two groups"
    assert len({a.weight for a in big.agents}) > 1 and len({a.level for a in big.agents}) > 1
    assert any(a.cap is not None for a in big.agents)


def test_example_shop_files_load_on_their_own() -> None:
    shop = load_shop_file(REPO / "config" / "shops" / "big.toml")
    assert shop.id == "big"


def test_load_shop_file_raises_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SHOP.replace('id = "a2"', 'id = "a2"\nlevel = 0\nweight = 0'))
    with pytest.raises(ConfigError) as info:
        load_shop_file(path)
    assert [p.key for p in info.value.problems] == ["agents[1].weight", "agents[1].level"]


# --- secrets --------------------------------------------------------------------------------

SECRET_DAEMON = """
[kafka]
bootstrap_servers = "127.0.0.1:9092"
security_protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "fenliu"
sasl_password = "kafka-hunter2"

[redis]
url = "redis://fenliu:redis-hunter2@127.0.0.1:6379/0?password=redis-query-hunter2"
"""


def test_secrets_never_appear_in_str_or_repr_of_the_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SECRET_DAEMON, s1=SHOP))
    assert config.kafka.sasl_password is not None
    assert config.kafka.sasl_password.get_secret_value() == "kafka-hunter2"
    assert "redis-hunter2" in config.redis.url  # the client still gets the real URL
    for text in (str(config), repr(config), str(config.redis), repr(config.kafka)):
        assert "hunter2" not in text
    assert config.redis.redacted_url == ("redis://fenliu:***@127.0.0.1:6379/0?password=***")


def test_redacted_url_hides_passwords_in_every_url_form() -> None:
    assert RedisConfig(url="redis://:pw@h/0").redacted_url == "redis://:***@h/0"
    assert RedisConfig(url="rediss://pw@h:6380").redacted_url == "rediss://***@h:6380"
    assert (
        RedisConfig(url="unix://:pw@/run/r.sock?db=1").redacted_url
        == "unix://:***@/run/r.sock?db=1"
    )
    assert RedisConfig(url="redis://:p@ss@h:1/0").redacted_url == "redis://:***@h:1/0"
    assert RedisConfig(url="redis://h:6379/0").redacted_url == "redis://h:6379/0"


def test_secrets_never_appear_in_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = SECRET_DAEMON.replace('"kafka-hunter2"', "12345678").replace("redis://", "http://")
    daemon = daemon.replace('sasl_username = "fenliu"', "")
    path = write(tmp_path, daemon, s1=SHOP)
    assert check_config_command(path) == 1
    out, err = capsys.readouterr()
    assert "kafka.sasl_password: must be a string" in err
    assert "redis.url: must start with" in err
    assert "hunter2" not in out + err and "12345678" not in out + err


def test_secrets_are_not_in_validation_errors_of_models_built_in_code() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        RedisConfig(url="http://:hunter2@h")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ValidationError) as kinfo:
        KafkaConfig(bootstrap_servers="h:1", sasl_password=12345678)
    assert "12345678" not in str(kinfo.value)


def test_ssl_cafile_is_resolved_next_to_fenliu_toml(tmp_path: Path) -> None:
    daemon = DAEMON.replace("[redis]", 'security_protocol = "SSL"\nssl_cafile = "ca.pem"\n[redis]')
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    config = load_config(write(tmp_path, daemon, s1=SHOP))
    assert config.kafka.ssl_cafile == tmp_path / "ca.pem"


def test_missing_ssl_cafile_is_reported(tmp_path: Path) -> None:
    daemon = DAEMON.replace("[redis]", 'security_protocol = "SSL"\nssl_cafile = "ca.pem"\n[redis]')
    path = write(tmp_path, daemon, s1=SHOP)
    assert problems(path) == [f"{path}: kafka.ssl_cafile: no such file: {tmp_path / 'ca.pem'}"]


# --- the value a problem is about -------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('mode = "fastest"', "mode: must be one of 'average', 'weighted', 'efficiency' or "
         "'conversion' (got 'fastest')"),
        ('[queue]\ndefault_cap = "ten"', "queue.default_cap: must be an integer (got 'ten')"),
        ("[queue]\ndefault_cap = 2.5", "queue.default_cap: must be a whole number (got 2.5)"),
        ("[queue]\nenabled = 3", "queue.enabled: must be true or false (got 3)"),
        ("sticky_window = true", "sticky_window: a duration is an integer number of seconds or a "
         "string like '10m' (got true)"),
        ('[queue]\nsession_timeout = "0s"', "queue.session_timeout: must be longer than 0s "
         "(got '0s')"),
        ('[queue]\nscope = "everywhere"', "queue.scope: must be one of 'shop' or 'groups' "
         "(got 'everywhere')"),
        ("[queue]\ngroups = 7", 'queue.groups: must be a list, such as ["a", "b"] (got 7)'),
        ("queue = 5", "queue: must be a table (got 5)"),
        ("id = true", "id: must be a string (in quotes) (got true)"),
    ],
)  # fmt: skip
def test_a_problem_with_a_value_echoes_the_value(
    tmp_path: Path, setting: str, message: str
) -> None:
    if setting.startswith("["):
        text = f"{SHOP}\n{setting}\n"
    elif setting.startswith("id ="):
        text = SHOP.replace('id = "s1"', setting)
    else:
        text = SHOP.replace('id = "s1"', f'id = "s1"\n{setting}')
    assert shop_problems(tmp_path, text)[0] == message


def test_a_duration_problem_echoes_the_duration_as_written(tmp_path: Path) -> None:
    daemon = DAEMON.replace("[redis]", 'session_timeout = "500ms"\n\n[redis]')
    path = write(tmp_path, daemon, s1=SHOP)
    assert problems(path) == [f"{path}: kafka.session_timeout: must be at least 1000 (got '500ms')"]


def test_a_value_the_sentence_quotes_is_not_echoed_twice(tmp_path: Path) -> None:
    text = SHOP.replace('id = "s1"', 'id = "s1"\nsticky_window = "3days"')
    assert shop_problems(tmp_path, text)[0].count("'3days'") == 1


def test_a_long_value_is_cut_to_40_characters(tmp_path: Path) -> None:
    text = SHOP.replace('id = "a2"', f'id = "a2"\nlevel = "{"x" * 100}"')
    assert shop_problems(tmp_path, text) == [
        f"agents[1].level: must be an integer (got '{'x' * 37}…')"
    ]
    assert len(f"'{'x' * 37}…'") == 40


def test_secret_values_are_never_echoed(tmp_path: Path) -> None:
    """A key named like a password, token or secret, and a URL with credentials: the problem
    is worded as before, without the value; an unknown key never echoes its value."""
    daemon = SECRET_DAEMON.replace('"kafka-hunter2"', "12345678")
    daemon = daemon.replace("redis://", "http://") + '\n[http]\nauth_token = "tok-hunter2"\n'
    path = write(tmp_path, daemon, s1=SHOP.replace('id = "s1"', 'id = "s1"\npassword = "hunter2"'))
    found = problems(path)
    assert f"{path}: kafka.sasl_password: must be a string (in quotes)" in found
    assert f"{path}: redis.url: must start with redis://, rediss:// or unix://" in found
    assert (
        f"{path}: http.auth_token: unknown key (not part of the configuration); "
        "did you mean 'token'?"
    ) in found
    assert "password: unknown key (not part of the configuration)" in found[-1]
    assert not any("hunter2" in p or "12345678" in p or "(got" in p for p in found)


def test_a_url_without_credentials_is_echoed(tmp_path: Path) -> None:
    daemon = DAEMON.replace("redis://127.0.0.1:6379/0", "http://127.0.0.1:6379/0")
    path = write(tmp_path, daemon, s1=SHOP)
    assert problems(path) == [
        f"{path}: redis.url: must start with redis://, rediss:// or unix:// "
        "(got 'http://127.0.0.1:6379/0')"
    ]


def test_keys_named_like_secrets_never_echo_in_any_model() -> None:
    class Creds(BaseModel):
        model_config = ConfigDict(extra="forbid")
        api_token: int
        db_password: int
        client_secret: int
        endpoint_url: str
        port: int

    found = validate(
        Creds,
        {"api_token": "t0k", "db_password": "pw", "client_secret": "s3", "endpoint_url": 5,
         "port": "p0rt"},
        Path("creds.toml"),
    )  # fmt: skip
    assert isinstance(found, list)
    assert [str(p) for p in found] == [
        "creds.toml: api_token: must be an integer",
        "creds.toml: db_password: must be an integer",
        "creds.toml: client_secret: must be an integer",
        "creds.toml: endpoint_url: must be a string (in quotes) (got 5)",
        "creds.toml: port: must be an integer (got 'p0rt')",
    ]
    shady = validate(Creds, {"api_token": 1, "db_password": 1, "client_secret": 1,
                             "endpoint_url": "h:pw@x?k=v", "port": "redis://u:pw@h"},
                     Path("creds.toml"))  # fmt: skip
    assert [str(p) for p in shady] == ["creds.toml: port: must be an integer"]


# --- [http] token ---------------------------------------------------------------------------


@pytest.mark.parametrize("listen", ["0.0.0.0:9464", "[::]:9464", "10.1.2.3:9464", "web:9464"])
def test_a_listen_off_loopback_without_a_token_is_refused(tmp_path: Path, listen: str) -> None:
    path = write(tmp_path, DAEMON + f'[http]\nlisten = "{listen}"\n', s1=SHOP)
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: http.token: is required when listen ({listen!r}) is not")
    assert "loopback" in problem


@pytest.mark.parametrize("listen", ["127.0.0.1:9464", "127.0.0.2:0", "[::1]:9464", "localhost:1"])
def test_a_loopback_listen_needs_no_token(tmp_path: Path, listen: str) -> None:
    config = load_config(write(tmp_path, DAEMON + f'[http]\nlisten = "{listen}"\n', s1=SHOP))
    assert config.http.token.get_secret_value() == ""


def test_the_token_is_kept_but_never_shown(tmp_path: Path) -> None:
    daemon = DAEMON + '[http]\nlisten = "0.0.0.0:9464"\ntoken = "tok-hunter2"\n'
    config = load_config(write(tmp_path, daemon, s1=SHOP))
    assert config.http.token.get_secret_value() == "tok-hunter2"
    for text in (str(config), repr(config), str(config.http), repr(config.http)):
        assert "hunter2" not in text


@pytest.mark.parametrize("value", ["123456789", "['tok-hunter2']", '{ a = "tok-hunter2" }'])
def test_a_wrong_token_value_is_never_echoed(tmp_path: Path, value: str) -> None:
    """Problems quote the value given (`got ...`), except under keys named like secrets."""
    path = write(tmp_path, DAEMON + f"[http]\ntoken = {value}\n", s1=SHOP)
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: http.token: ")
    assert "hunter2" not in problem and "123456789" not in problem
