"""The running daemon, `fenliu run`: the asyncio shell around the routing core.

    run.py               the `Service` loop and `fenliu run`
    lifecycle.py         the service's phase as one value: serving, restoring, stopping...
    clock.py             the daemon's clock
    clients.py           the Kafka and Redis clients, topic metadata, the startup check
    aiokafka_compat.py   the aiokafka internals the service uses, checked by a test
    startup.py           waiting for Kafka at start-up: the backoff, its bounded log
    kafka.py             home partitions, co-partitioned assignment, batch order, output routing
    intake.py            a polled batch and the due timers into engine calls and outbox records
    delivery.py          outputs to the producer, their acknowledgements, emptying the outboxes
    store.py             Redis checkpoints, fenced by owner epochs
    scripts.py           the store's Lua scripts and the encoding of their arguments
    checkpoint.py        what a batch checkpoints, what a restore brings back, shops set aside
    checkpoint_types.py  the values a checkpoint passes: Batch, Saved, Restored
    holdings.py          what this instance holds: one record per partition, shops set aside
    restore.py           the restore, the partitions owned and the rebalance listener
    readiness.py         what /readyz and the lag metric read
    control_plane.py     the HTTP routes, the signals and reloading
    http.py              the small HTTP server
    metrics.py           Prometheus metrics, fed by an observer of the core
    logs.py              structlog set up for JSON lines
    record_log.py        rejections and decisions as log lines

Nothing here imports the operator tools, the dev stack or the lab.
"""
