"""The running daemon, `fenliu run`: the asyncio shell around the routing core.

    run.py            the `Service` loop and `fenliu run`
    clock.py          the daemon's clock
    clients.py        the Kafka and Redis clients, topic metadata, the startup check
    kafka.py          co-partitioned assignment, batch order, output routing
    store.py          Redis checkpoints, fenced by owner epochs
    checkpoint.py     what a batch checkpoints, what a restore brings back, shops set aside
    restore.py        the restore and the rebalance listener
    readiness.py      what /readyz and the lag metric read
    control_plane.py  the HTTP routes and reloading
    http.py           the small HTTP server
    metrics.py        Prometheus metrics, fed by an observer of the core
    logs.py           structlog set up for JSON lines
    record_log.py     rejections and decisions as log lines

Nothing here imports the operator tools, the dev stack or the lab.
"""
