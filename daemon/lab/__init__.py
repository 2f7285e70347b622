"""The policy lab: a discrete-event simulator that drives the routing core in virtual time
(`fenliu simulate`), the measures it reports and the report it writes (issue: policy lab).

    trace.py      what one simulated run records (the interface between the parts)
    world.py      buyers and agents: seeded behaviour, common random numbers per buyer
    scenarios.py  steady, double11, uneven_shifts, sticky_buildup
    policy.py     `--mode` policies: which modes a run overrides, and the oracle
    history.py    what the shop knows before the run (30 days of agent_stats)
    runner.py     the event loop around `daemon.core.engine.Engine`
    measures.py   conversion, waits, replies, abandonment, fairness, wait-estimate errors,
                  oracle share
    grey.py       grey tests in the lab: an experiment's figures beside the world's truth
    report.py     the policy table and the HTML page of `--report`
    plots.py      its PNG plots (matplotlib: the `lab` extra, imported only for `--report`)
    command.py    `fenliu simulate`
"""
