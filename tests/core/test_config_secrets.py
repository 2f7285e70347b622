"""Secrets in fenliu.toml (contract §5): `${NAME}` in every setting that can hold one, an
unset variable named by file and key, credentials redacted wherever they sit in a URL, and
the TLS settings of Kafka (client certificates) and Redis (`rediss://` query arguments)
checked up front."""

from __future__ import annotations

import ssl
from pathlib import Path

import orjson
import pytest

from daemon.config import RedisConfig, check_config_command, load_config
from daemon.config.secrets import mask_urls, redact_url
from daemon.service.clients import kafka_client_kwargs
from tests.core.test_config import DAEMON, SHOP, problems, write
from tests.tls import KEY_PASSWORD, Certs, make_certs

SECRET_ENV = {
    "FENLIU_T_REDIS": "redis-hunter2",
    "FENLIU_T_SASL": "sasl-hunter2",
    "FENLIU_T_KEY": KEY_PASSWORD,
    "FENLIU_T_TOKEN": "token-hunter2",
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _secret_daemon(certs: Certs) -> str:
    return f"""
[kafka]
bootstrap_servers = "127.0.0.1:9093"
security_protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "fenliu"
sasl_password = "${{FENLIU_T_SASL}}"
ssl_cafile = "{certs.ca}"
ssl_certfile = "{certs.client_cert}"
ssl_keyfile = "{certs.client_key}"
ssl_password = "${{FENLIU_T_KEY}}"

[redis]
url = "rediss://fenliu:${{FENLIU_T_REDIS}}@127.0.0.1:6380/0?ssl_ca_certs={certs.ca}"

[http]
listen = "0.0.0.0:9464"
token = "${{FENLIU_T_TOKEN}}"
"""


def test_every_secret_setting_takes_environment_variables_and_never_shows_them(
    tmp_path: Path, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    config = load_config(write(tmp_path, _secret_daemon(certs), s1=SHOP))
    kafka, redis = config.kafka, config.redis
    assert kafka.sasl_password is not None and kafka.ssl_password is not None
    assert kafka.sasl_password.get_secret_value() == "sasl-hunter2"
    assert kafka.ssl_password.get_secret_value() == KEY_PASSWORD
    assert config.http.token.get_secret_value() == "token-hunter2"
    assert redis.url.startswith("rediss://fenliu:redis-hunter2@127.0.0.1:6380/0?")
    exported = [str(config), repr(config), config.model_dump_json(), str(config.model_dump())]
    for text in exported:
        assert "hunter2" not in text
    assert orjson.loads(config.model_dump_json())["redis"]["url"] == redis.redacted_url
    assert redis.redacted_url == f"rediss://fenliu:***@127.0.0.1:6380/0?ssl_ca_certs={certs.ca}"


@pytest.mark.parametrize(
    ("key", "variable"),
    [("redis.url", "FENLIU_T_REDIS"), ("kafka.sasl_password", "FENLIU_T_SASL"),
     ("kafka.ssl_password", "FENLIU_T_KEY"), ("http.token", "FENLIU_T_TOKEN")],
)  # fmt: skip
def test_an_unset_variable_is_a_problem_naming_file_key_and_variable(
    tmp_path: Path,
    certs: Certs,
    key: str,
    variable: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in SECRET_ENV.items():
        if name != variable:
            monkeypatch.setenv(name, value)
    monkeypatch.delenv(variable, raising=False)
    path = write(tmp_path, _secret_daemon(certs), s1=SHOP)
    assert check_config_command(path) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"{path}: {key}: uses environment variable {variable}, which is not set"
    ]
    assert "hunter2" not in out + err


def test_a_dollar_in_a_secret_is_kept_only_braces_name_a_variable(tmp_path: Path) -> None:
    daemon = DAEMON.replace("redis://", "redis://:pa$word$$x@") + '[http]\ntoken = "t$HOME"\n'
    config = load_config(write(tmp_path, daemon, s1=SHOP))
    assert config.redis.url.startswith("redis://:pa$word$$x@127.0.0.1")
    assert config.http.token.get_secret_value() == "t$HOME"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rediss://u:pw@h:1/0?ssl_password=pw&ssl_keyfile=/k.pem&db=1",
         "rediss://u:***@h:1/0?ssl_password=***&ssl_keyfile=/k.pem&db=1"),
        ("redis://h/0?password=pw&Token=pw&auth=pw&access_key=pw&client_secret=pw&x=1",
         "redis://h/0?password=***&Token=***&auth=***&access_key=***&client_secret=***&x=1"),
        ("rediss://h/0?ssl_ca_certs=/etc/ca.pem&ssl_certfile=/c.pem", None),
        ("unix://:pw@/run/r.sock?db=1", "unix://:***@/run/r.sock?db=1"),
        ("redis://:p@ss@h:1/0", "redis://:***@h:1/0"),
        ("rediss://pw@h:6380", "rediss://***@h:6380"),
        ("rediss://h/0?ssl%5Fpassword=pw", "rediss://h/0?ssl%5Fpassword=***"),
    ],
)  # fmt: skip
def test_credentials_are_redacted_wherever_they_sit_in_a_url(url: str, shown: str | None) -> None:
    assert redact_url(url) == (shown or url)
    assert RedisConfig(url=url).redacted_url == (shown or url)
    assert mask_urls(f"error: cannot reach {url} (retrying)") == (
        f"error: cannot reach {shown or url} (retrying)"
    )


def test_redis_tls_files_must_exist_and_need_rediss(tmp_path: Path, certs: Certs) -> None:
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "ca.pem").write_bytes(certs.ca.read_bytes())
    good = DAEMON.replace("redis://", "rediss://:pw@").replace("/0", "/0?ssl_ca_certs=tls/ca.pem")
    config = load_config(write(tmp_path, good, s1=SHOP))
    assert config.redis.tls_files == {"ssl_ca_certs": str(tmp_path / "tls" / "ca.pem")}
    (tmp_path / "b").mkdir()
    missing = good.replace("tls/ca.pem", "tls/nope.pem")
    path = write(tmp_path / "b", missing, s1=SHOP)
    assert problems(path) == [
        f"{path}: redis.url: ssl_ca_certs names no such file: {tmp_path / 'b' / 'tls/nope.pem'}"
    ]
    plain = good.replace("rediss://", "redis://")
    path = write(tmp_path / "b", plain, s1=SHOP)
    assert problems(path) == [
        f"{path}: redis.url: ssl_ca_certs is only used with TLS: the URL must start with rediss://"
    ]


def _kafka_tls(certs: Certs, **settings: str) -> str:
    lines = "\n".join(f'{key} = "{value}"' for key, value in settings.items())
    return DAEMON.replace("[redis]", f'security_protocol = "SSL"\n{lines}\n\n[redis]')


def test_a_kafka_client_certificate_goes_into_the_ssl_context(tmp_path: Path, certs: Certs) -> None:
    (tmp_path / "client.pem").write_bytes(certs.client_cert.read_bytes())
    daemon = _kafka_tls(
        certs, ssl_cafile=str(certs.ca), ssl_certfile="client.pem",
        ssl_keyfile=str(certs.client_key), ssl_password=KEY_PASSWORD,
    )  # fmt: skip
    config = load_config(write(tmp_path, daemon, s1=SHOP))
    assert config.kafka.ssl_certfile == tmp_path / "client.pem"  # absolute once loaded
    context = kafka_client_kwargs(config.kafka)["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "fenliu test ca"),),)
    ]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"ssl_keyfile": "k.pem"}, "kafka.ssl_keyfile: belongs to a client certificate: set "
         "ssl_certfile too"),
        ({"ssl_password": "pw"}, "kafka.ssl_password: belongs to a client certificate"),
        ({"ssl_certfile": "nope.pem"}, "kafka.ssl_certfile: no such file: "),
        ({"ssl_certfile": "CERT", "ssl_keyfile": "KEY", "ssl_password": "wrong-hunter2"},
         "kafka.ssl_certfile: does not load with its key (a wrong ssl_password, or not its "
         "key): [SSL] PEM lib"),
        ({"ssl_certfile": "CERT", "ssl_keyfile": "CA"},
         "kafka.ssl_certfile: does not load with its key"),
        ({"ssl_certfile": "CERT", "ssl_keyfile": "KEY"},
         "kafka.ssl_certfile: does not load with its key and password: its key is encrypted: "
         "set ssl_password"),
    ],
)  # fmt: skip
def test_kafka_client_certificate_settings_are_checked(
    tmp_path: Path, certs: Certs, settings: dict[str, str], expected: str
) -> None:
    paths = {"CERT": str(certs.client_cert), "KEY": str(certs.client_key), "CA": str(certs.ca)}
    settings = {k: paths.get(v, v) for k, v in settings.items()}
    path = write(tmp_path, _kafka_tls(certs, **settings), s1=SHOP)
    found = problems(path)
    assert [p for p in found if p.startswith(f"{path}: {expected}")], found
    assert "hunter2" not in "\n".join(found)


def test_kafka_certificate_settings_need_tls(tmp_path: Path, certs: Certs) -> None:
    daemon = _kafka_tls(certs, ssl_certfile=str(certs.client_cert))
    path = write(tmp_path, daemon.replace('"SSL"', '"SASL_PLAINTEXT"'), s1=SHOP)
    assert f"{path}: kafka.ssl_certfile: is only used with security_protocol SSL or SASL_SSL" in (
        problems(path)
    )
