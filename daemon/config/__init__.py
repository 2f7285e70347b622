"""The configuration: `fenliu.toml` and its shop files, read and validated once, up front.

    daemon_file.py  the models of `fenliu.toml`'s tables, `FenliuConfig`, `[kafka]` cross-checks
    files.py        reading TOML, `load_config` (`load_config_or_report` for commands),
                    `load_shop_file`, `fenliu check-config`, `control_socket` (where
                    `fenliu reload` finds the daemon)
    problems.py     problems named by file and key, pydantic's errors worded for people

What a valid shop is lives in `daemon.core.config`.
"""

from daemon.config.daemon_file import (
    FenliuConfig,
    HttpConfig,
    KafkaConfig,
    RedisConfig,
    ShopsConfig,
    TopicsConfig,
)
from daemon.config.files import (
    check_config_command,
    control_socket,
    describe_shop,
    load_config,
    load_config_or_report,
    load_shop_file,
    stamp,
)
from daemon.config.problems import ConfigError, ConfigProblem

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "FenliuConfig",
    "HttpConfig",
    "KafkaConfig",
    "RedisConfig",
    "ShopsConfig",
    "TopicsConfig",
    "check_config_command",
    "control_socket",
    "describe_shop",
    "load_config",
    "load_config_or_report",
    "load_shop_file",
    "stamp",
]
