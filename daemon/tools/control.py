"""`fenliu reload`: ask the running daemon (on its `[http] listen` address) to reload."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

from daemon.config import load_config_or_report


def reload_command(config_path: Path) -> int:
    """POST /-/reload to the daemon configured by `config_path`; print its answer."""
    preface = "the configuration does not validate; nothing was sent:"
    config = load_config_or_report(config_path, preface=preface)
    if config is None:
        return 1
    host = config.http.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    url = f"http://{host}:{config.http.port}/-/reload"
    request = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=45) as answer:
            print(answer.read().decode().strip())
            return 0
    except urllib.error.HTTPError as exc:
        print(exc.read().decode().strip(), file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        print(f"no daemon answered at {url}: {exc}", file=sys.stderr)
    return 1
