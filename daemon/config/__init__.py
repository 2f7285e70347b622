"""The configuration: `fenliu.toml` and its shop files, read and validated once, up front.

    files.py     the daemon file's models, reading TOML, `load_config`, `load_shop_file`,
                 `fenliu check-config`
    problems.py  problems named by file and key, pydantic's errors worded for people

What a valid shop is lives in `daemon.core.config`.
"""

from daemon.config.files import (
    FenliuConfig,
    HttpConfig,
    KafkaConfig,
    RedisConfig,
    ShopsConfig,
    TopicsConfig,
    check_config_command,
    describe_shop,
    load_config,
    load_shop_file,
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
    "describe_shop",
    "load_config",
    "load_shop_file",
]
