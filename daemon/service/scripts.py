"""The Lua scripts of daemon.service.store and the encoding of their arguments.

Each script runs on one node: all its keys carry one hash tag (one shop, or one partition).
`WRITE` is the fenced write — it changes nothing unless the owner hash still holds the
writer's epoch, nor when its checkpoint number is not above the stored one — and `CLAIM`
takes ownership and reads a shop's or a partition's keys. `op` encodes one operation of
`WRITE`; `sha` is a script's digest, as EVALSHA names it (daemon.service.store runs scripts
by digest and falls back to their text when a node does not know them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

WRITE = """
local owner = redis.call('HMGET', KEYS[1], 'epoch', 'ckseq')
if owner[1] ~= ARGV[1] then return 'fenced' end
local numbered = ARGV[2] ~= '-'
if numbered and tonumber(owner[2] or '0') >= tonumber(ARGV[2]) then return 'again' end
local i = 3
while i <= #ARGV do
  local op, key, n = ARGV[i], KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
  i = i + 3
  if n == 0 then redis.call(op, key) end
  local j = 0
  while j < n do
    local m = math.min(n - j, 1000)
    redis.call(op, key, unpack(ARGV, i + j, i + j + m - 1))
    j = j + m
  end
  i = i + n
end
if numbered then redis.call('HSET', KEYS[1], 'ckseq', ARGV[2]) end
return 'ok'
"""
"""Fenced write. KEYS[1]: the owner hash. ARGV: epoch, ckseq ('-': not numbered, e.g. an
outbox clear, which is harmless to repeat), then operations, each as
command, key index, argument count, arguments (variadic commands are split in chunks of
1,000 arguments, so pairs of HSET stay together)."""

CLAIM = """
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'ckseq', 0)
local out = {epoch, redis.call('HGETALL', KEYS[1])}
for k = 2, #KEYS do
  if ARGV[k - 1] == 'hash' then
    out[#out + 1] = redis.call('HGETALL', KEYS[k])
  else
    out[#out + 1] = redis.call('LRANGE', KEYS[k], 0, -1)
  end
end
return out
"""
"""Claim. KEYS[1]: the owner hash; KEYS[2..]: keys to read, ARGV[k-1] says 'hash' or
'list' for KEYS[k]. Returns the new epoch, the owner hash, then each key's content."""

CHUNK = 1000  # arguments per variadic command inside the write script


def op(command: str, key_index: int, args: Sequence[Any], *, always: bool = False) -> list[Any]:
    """One operation of the write script (nothing when it has no arguments)."""
    if not args and not always:
        return []
    return [command, key_index, len(args), *args]


def sha(source: str) -> str:
    """A script's digest, as EVALSHA names it."""
    return _SHAS.setdefault(
        source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    )


_SHAS: dict[str, str] = {}
