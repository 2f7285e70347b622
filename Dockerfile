# Fenliu daemon image: `fenliu run` with the configuration mounted at /etc/fenliu.
#
#   docker build -t fenliu .
#   docker run --rm -v "$PWD/config:/etc/fenliu:ro" -p 9464:9464 fenliu
#
# /etc/fenliu/fenliu.toml and its shops folder come from the volume. To scrape /metrics from
# outside the container, set `[http] listen = "0.0.0.0:9464"` (and `token`, then required) there; the HEALTHCHECK below
# asks 127.0.0.1:9464, so keep the port 9464 (or override HEALTHCHECK when changing it).

# --- build: the package and its runtime dependencies in a virtualenv (no extras), with the
# routing core compiled by mypyc in a throw-away build venv (the image carries no compiler);
# the last step fails the build if the installed package would run the core as plain Python
# (-I: the installed package, not the one in /src)
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY daemon ./daemon
COPY topics ./topics
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir '.[compiled]' \
    && /opt/build/bin/python -m daemon.tools.compile \
    && python -m venv /opt/fenliu \
    && /opt/fenliu/bin/pip install --no-cache-dir . \
    && FENLIU_CORE=compiled /opt/fenliu/bin/python -I -c "import daemon"

# --- runtime: the virtualenv on a clean slim image, run by an unprivileged user -----------
FROM python:3.11-slim

ENV PATH=/opt/fenliu/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN groupadd --system --gid 10001 fenliu \
    && useradd --system --uid 10001 --gid fenliu --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin fenliu

COPY --from=build /opt/fenliu /opt/fenliu

USER 10001:10001
WORKDIR /etc/fenliu
VOLUME /etc/fenliu
EXPOSE 9464

# slim has no curl: ask /healthz with the standard library (exit 1 on any failure).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=3)"]

# Exec form: fenliu is PID 1 and receives SIGTERM itself (it drains, saves and commits).
ENTRYPOINT ["fenliu"]
CMD ["run", "--config", "/etc/fenliu/fenliu.toml"]
