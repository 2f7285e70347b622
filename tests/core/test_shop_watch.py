"""`[shops] watch` (contract §5): what the daemon compares to see that its files changed
(`daemon.config.stamp`), here on a Kubernetes ConfigMap's layout, and the setting's bounds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.config import ConfigError, load_config, stamp

DAEMON_FILE = """[kafka]
bootstrap_servers = "127.0.0.1:9092"
[redis]
url = "redis://127.0.0.1:6379/0"
[shops]
dir = "shops"
watch = "{watch}"
"""


def configmap(folder: Path, files: dict[str, str], version: str) -> None:
    """Write `files` the way the kubelet updates a mounted ConfigMap: into a new hidden
    folder, then one atomic rename of the `..data` link to it; each name links through it."""
    data = folder / f"..{version}"
    data.mkdir(parents=True)
    for name, text in files.items():
        (data / name).write_text(text)
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(Path("..data") / name)
    (folder / "..data_tmp").symlink_to(data.name)
    os.replace(folder / "..data_tmp", folder / "..data")


def test_the_stamp_sees_edits_new_and_removed_files_and_a_configmap_swap(tmp_path: Path) -> None:
    config, shops = tmp_path / "fenliu.toml", tmp_path / "shops"
    config.write_text(DAEMON_FILE.format(watch="5s"))
    configmap(shops, {"a.toml": "x", "b.toml": "y"}, "v1")
    first = stamp(config, shops)
    assert [Path(p).name for p, *_ in first] == ["fenliu.toml", "a.toml", "b.toml"]
    assert stamp(config, shops) == first  # nothing changed: nothing seen
    configmap(shops, {"a.toml": "x", "b.toml": "y"}, "v2")  # same text, new files behind
    swapped = stamp(config, shops)
    assert swapped != first
    (shops / "c.toml").write_text("z")
    added = stamp(config, shops)
    assert added != swapped
    (shops / "c.toml").unlink()
    assert stamp(config, shops) == swapped
    os.utime(config, ns=(1, 1))
    assert stamp(config, shops) != swapped
    (shops / "..v2" / "b.toml").unlink()  # a name whose file is gone: seen, the reload says why
    assert stamp(config, shops)[2][1:] == (-1, -1, -1)


@pytest.mark.parametrize(("watch", "ms"), [("0", 0), ("1s", 1000), ("5s", 5000), ("500ms", None)])
def test_watch_is_off_or_at_least_a_second(tmp_path: Path, watch: str, ms: int | None) -> None:
    (tmp_path / "fenliu.toml").write_text(DAEMON_FILE.format(watch=watch))
    (tmp_path / "shops").mkdir()
    (tmp_path / "shops" / "s.toml").write_text(
        'id = "s"\n[[agents]]\nid = "a"\n[[groups]]\nname = "g"\nagents = ["a"]\n'
    )
    if ms is None:
        with pytest.raises(ConfigError, match=r"shops\.watch"):
            load_config(tmp_path / "fenliu.toml")
    else:
        assert load_config(tmp_path / "fenliu.toml").shops.watch == ms
