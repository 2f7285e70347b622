"""The sans-I/O routing core: pure state machine, fed events and `now`, returns decisions."""
