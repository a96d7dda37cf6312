-- One provider account's shared limiter state, updated atomically on the Redis server.
--
-- KEYS[1]  hash: tat (GCRA theoretical arrival time), rate (effective calls/s, AIMD),
--                cut_at (last multiplicative decrease), paused_until (Retry-After)
-- KEYS[2]  sorted set: in-flight leases, scored by their expiry time
-- KEYS[3]  hash: event counters for operators and the benchmark (late: shifted_late, voided_late)
-- ARGV[1]  operation: acquire | late | release | success | throttled
-- ARGV[2]  ceiling: the configured quota less the headroom (calls/s); 0 = no rate limit
--
-- Every time comes from the server's own clock (TIME), so workers on machines whose
-- clocks disagree still share one schedule. Times are written with %.6f because Lua's
-- default number formatting keeps only 14 significant digits (0.1 ms at epoch scale).

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local op = ARGV[1]
local ceiling = tonumber(ARGV[2])
local key_ttl = 3600

local function fmt(x) return string.format('%.6f', x) end
-- The next slot rounds up: rounding down would gain a microsecond per grant, and ~100 of
-- them would let one call too many into a one-second window.
local function fmt_up(x) return string.format('%.6f', math.ceil(x * 1000000) / 1000000) end

local function current_rate(stored)
  local rate = tonumber(stored) or ceiling
  if rate > ceiling then rate = ceiling end  -- the quota was lowered in the configuration
  return rate
end

if op == 'acquire' then
  -- ARGV[3] max_wait_s, ARGV[4] max_in_flight (0 = no cap), ARGV[5] lease_s, ARGV[6] lease id,
  -- ARGV[7] calls the slot covers (a two-sided card sends FRONT then BACK: 2; default 1),
  -- ARGV[8] a lease to release first ('' = none): the same thread's previous call, whose
  -- release rides on this acquire instead of costing a round trip of its own
  -- Returns {status, wait_s, rate, start}: status 1 = granted (call after wait_s, at server
  -- time start), 0 = the next token is further than max_wait_s, -1 = too many in flight.
  local max_wait = tonumber(ARGV[3])
  local cap = tonumber(ARGV[4])
  local lease_s = tonumber(ARGV[5])
  local calls = tonumber(ARGV[7]) or 1
  if ARGV[8] and ARGV[8] ~= '' then redis.call('ZREM', KEYS[2], ARGV[8]) end
  local h = redis.call('HMGET', KEYS[1], 'tat', 'rate', 'paused_until')
  local rate = current_rate(h[2])
  local start = math.max(now, tonumber(h[3]) or 0)
  if ceiling > 0 then start = math.max(start, tonumber(h[1]) or 0) end
  local wait = start - now
  if wait > max_wait then return {0, fmt(wait), fmt(rate), fmt(start)} end
  if cap > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now))  -- leases of dead workers
    if redis.call('ZCARD', KEYS[2]) >= cap then
      local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
      return {-1, fmt(math.max(0, tonumber(first[2]) - now)), fmt(rate), fmt(start)}
    end
    redis.call('ZADD', KEYS[2], fmt(start + lease_s), ARGV[6])
    redis.call('EXPIRE', KEYS[2], key_ttl)
  end
  if ceiling > 0 then
    redis.call('HSET', KEYS[1], 'tat', fmt_up(start + calls / rate), 'rate', fmt(rate))
    redis.call('EXPIRE', KEYS[1], key_ttl)
  end
  return {1, fmt(wait), fmt(rate), fmt(start)}
end

if op == 'late' then
  -- A worker woke delta seconds after its slot at (server time) start. Moving the rest of
  -- the schedule back by delta keeps every window honest, provided the slots already
  -- handed out after this one fit inside one window (then none of them can be the call a
  -- full window later). Returns 1 if shifted, 0 if the caller must give the slot up.
  -- ARGV[3] start, ARGV[4] delta, ARGV[5] window_s, ARGV[6] the slot's lease id ('' = none)
  -- The outcome is counted here, and a given-up slot's lease released here: one round
  -- trip for what took three (late, release, the event count) on a loaded machine.
  local start, delta, window = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  local h = redis.call('HMGET', KEYS[1], 'tat', 'rate')
  local tat = tonumber(h[1]) or 0
  if ceiling <= 0 or tat - start >= window then
    if ARGV[6] and ARGV[6] ~= '' then redis.call('ZREM', KEYS[2], ARGV[6]) end
    redis.call('HINCRBY', KEYS[3], 'voided_late', 1)
    return 0
  end
  tat = math.max(tat + delta, start + delta + 1 / current_rate(h[2]))
  redis.call('HSET', KEYS[1], 'tat', fmt_up(tat))
  redis.call('HINCRBY', KEYS[3], 'shifted_late', 1)
  return 1
end

if op == 'release' then
  return redis.call('ZREM', KEYS[2], ARGV[3])
end

if op == 'success' then
  -- ARGV[3] additive step: calls/s gained per second of successes (spread over the calls)
  if ceiling <= 0 then return fmt(0) end
  local rate = current_rate(redis.call('HGET', KEYS[1], 'rate'))
  if rate < ceiling then
    rate = math.min(ceiling, rate + tonumber(ARGV[3]) / rate)
    redis.call('HSET', KEYS[1], 'rate', fmt(rate))
    redis.call('EXPIRE', KEYS[1], key_ttl)
  end
  return fmt(rate)
end

if op == 'throttled' then
  -- ARGV[3] factor, ARGV[4] floor (calls/s), ARGV[5] cooldown_s, ARGV[6] retry_after_s
  local h = redis.call('HMGET', KEYS[1], 'rate', 'cut_at', 'paused_until')
  local rate = current_rate(h[1])
  if ceiling > 0 and now - (tonumber(h[2]) or 0) >= tonumber(ARGV[5]) then
    -- One cut per cooldown: the calls already in flight when the provider pushed back
    -- report the same congestion and must not cut again (TCP cuts once per RTT).
    rate = math.max(tonumber(ARGV[4]), rate * tonumber(ARGV[3]))
    redis.call('HSET', KEYS[1], 'rate', fmt(rate), 'cut_at', fmt(now))
  end
  local retry_after = tonumber(ARGV[6])
  if retry_after > 0 then
    local paused = math.max(tonumber(h[3]) or 0, now + retry_after)
    redis.call('HSET', KEYS[1], 'paused_until', fmt(paused))
  end
  redis.call('EXPIRE', KEYS[1], key_ttl)
  return fmt(rate)
end

return redis.error_reply('unknown operation ' .. tostring(op))
