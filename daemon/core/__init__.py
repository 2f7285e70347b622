"""The sans-I/O routing core: pure state machine, fed events and `now`, returns decisions.

It runs as plain Python or compiled by mypyc from the same source (see daemon/__init__.py).
"""
