"""Operator tools: the `fenliu` commands that talk to a running daemon or its broker.

control.py       `fenliu reload`: asks the running daemon to re-read its configuration
explain.py       `fenliu explain`: each agent's share and what made it
topics_admin.py  `fenliu topics create`
"""
