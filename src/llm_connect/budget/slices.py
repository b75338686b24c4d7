"""A process's slice of one leased budget level, and the Lua script that syncs slices with Redis.

Used by :class:`~llm_connect.budget.leases.LeasedBudgetStore` (see that module for the design).
"""

from __future__ import annotations

from .redis_store import _PRELUDE
from .stores import Level, ReplayCallback

__all__ = ["SYNC_LUA", "Slice"]

# One sync of several slices. KEYS/ARGV as the prelude (one level per slice), then per level 10 ARGV
# from B: old member ('' = none), flush tokens, flush usd, overrun tokens, overrun usd, keep tokens,
# keep usd, extra tokens, extra usd, new member prefix; then the expiry of the new slices (ms) and how
# long the reply is kept (ms). A top-up grants at most half the room left beyond what is kept, so the
# last of a budget is not all taken by one replica (calls that do not fit a slice are reserved directly).
# Replies "status,tokens,usd,spent,spent_usd" per level (status 1 kept, 2 lost: it had expired), then
# "x", then "index,unit,threshold,spent" per threshold crossed. The reply is kept in KEYS[1] so that a
# retried sync (its reply lost) returns the same answer without applying twice.
SYNC_LUA = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  local out = {}
  for part in string.gmatch(redis.call('GET', KEYS[1]), '[^;]+') do out[#out + 1] = part end
  return out
end
local until_ms = ARGV[B + 10 * n]
local levels, crossed = {}, {}
for i = 0, n - 1 do
  local k, l, rc, total, total_usd, exp, thr = lvl(i)
  local a = B + 10 * i
  local old = ARGV[a]
  local ft, fu, ot, ou = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local kt, ku, et, eu = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7]), tonumber(ARGV[a + 8])
  reclaim(k, l, rc)
  local status = 1
  if old ~= '' then
    if redis.call('ZREM', l, old) == 1 then
      local ht, hu = string.match(old, '|(%d+)|(%d+)$')
      ht, hu = tonumber(ht), tonumber(hu)
      if ht ~= 0 then redis.call('HINCRBY', k, 'r', -ht) end
      if hu ~= 0 then redis.call('HINCRBY', k, 'ru', -hu) end
    else
      redis.call('ZREM', rc, old)
      status, kt, ku = 2, 0, 0
    end
  end
  local s, r, su, ru = state(k)
  local ct, cu = ft, fu
  if total >= 0 then ct = math.min(ct, math.max(0, total - s - r)) end
  if total_usd >= 0 then cu = math.min(cu, math.max(0, total_usd - su - ru)) end
  ot, ou = ot + ft - ct, ou + fu - cu
  if ct ~= 0 then s = redis.call('HINCRBY', k, 's', ct) end
  if cu ~= 0 then su = redis.call('HINCRBY', k, 'su', cu) end
  if ot ~= 0 then redis.call('HINCRBY', k, 'o', ot) end
  if ou ~= 0 then redis.call('HINCRBY', k, 'ou', ou) end
  if ct ~= 0 or cu ~= 0 then
    for t in string.gmatch(thr, '[^,]+') do
      local f = tonumber(t)
      if total > 0 and s >= f * total and redis.call('HSETNX', k, 'ft:' .. t, 1) == 1 then
        crossed[#crossed + 1] = string.format('%d,0,%s,%d', i, t, s)
      end
      if total_usd > 0 and su >= f * total_usd and redis.call('HSETNX', k, 'fu:' .. t, 1) == 1 then
        crossed[#crossed + 1] = string.format('%d,1,%s,%d', i, t, su)
      end
    end
  end
  local nt, nu = 0, 0
  if total >= 0 then
    local room = total - s - r
    nt = math.max(0, math.min(kt, room) + math.max(0, math.min(et, math.floor((room - kt) / 2))))
  end
  if total_usd >= 0 then
    local room = total_usd - su - ru
    nu = math.max(0, math.min(ku, room) + math.max(0, math.min(eu, math.floor((room - ku) / 2))))
  end
  if nt > 0 or nu > 0 then
    redis.call('ZADD', l, until_ms, string.format('%s|%d|%d', ARGV[a + 9], nt, nu))
    if nt ~= 0 then redis.call('HINCRBY', k, 'r', nt) end
    if nu ~= 0 then redis.call('HINCRBY', k, 'ru', nu) end
  end
  expire(k, l, exp)
  levels[#levels + 1] = string.format('%d,%d,%d,%d,%d', status, nt, nu, s, su)
end
levels[#levels + 1] = 'x'
for _, c in ipairs(crossed) do levels[#levels + 1] = c end
redis.call('SET', KEYS[1], table.concat(levels, ';'), 'PX', tonumber(ARGV[B + 10 * n + 1]))
return levels
"""
)


class Slice:
    """This replica's slice of one level, and the spend on it that Redis has not seen yet."""

    __slots__ = (
        "base_s",
        "base_su",
        "fired",
        "flushing",
        "held_t",
        "held_u",
        "level",
        "member",
        "notify",
        "over_t",
        "over_u",
        "res",
        "res_t",
        "res_u",
        "returning",
        "spent_t",
        "spent_u",
        "used_at",
        "valid_until",
        "want",
    )

    def __init__(self, level: Level, now: float) -> None:
        self.level = level
        #: the slice as Redis holds it ("" = none) and its amounts
        self.member = ""
        self.held_t = self.held_u = 0
        #: spend (and overrun) not yet flushed; spend in a flush still in flight
        self.spent_t = self.spent_u = self.over_t = self.over_u = 0
        self.flushing: tuple[int, int, int, int] = (0, 0, 0, 0)
        #: reservations held in the slice: res_id -> (tokens, usd)
        self.res: dict[str, tuple[int, int]] = {}
        self.res_t = self.res_u = 0
        #: after this (local clock) the slice is not used (it expires in Redis ``margin`` s later)
        self.valid_until = 0.0
        #: Redis's spent as of the last sync (ours included), and the thresholds known to have fired
        self.base_s = self.base_su = 0
        self.fired: set[tuple[str, float]] = set()
        #: who hears of crossings found by a background flush: (callback, index of this level in its chain)
        self.notify: tuple[ReplayCallback, int] | None = None
        self.used_at = now
        #: a top-up is wanted / the slice is being handed back (no new local reservations)
        self.want = True
        self.returning = False

    def free(self) -> tuple[int, int]:
        f = self.flushing
        return (
            self.held_t - self.spent_t - f[0] - self.res_t,
            self.held_u - self.spent_u - f[1] - self.res_u,
        )

    def fits(self, tokens: int, usd: int, now: float) -> bool:
        if not self.member or self.returning or now >= self.valid_until:
            return False
        ft, fu = self.free()
        lv = self.level
        return (lv.total is None or tokens <= ft) and (lv.total_usd is None or usd <= fu)

    def dirty(self) -> bool:
        return bool(self.spent_t or self.spent_u or self.over_t or self.over_u)
