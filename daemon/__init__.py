"""Fenliu: the routing daemon (sans-I/O core in `daemon.core`, asyncio shell around it)."""
