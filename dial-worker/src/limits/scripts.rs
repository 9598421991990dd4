//! The Lua scripts behind the limits. Each runs atomically inside Redis, so every worker of the
//! fleet sees one consistent count, and each reads the clock with `TIME` so the workers' own
//! clocks (which may drift apart) never matter.
//!
//! All times inside the scripts are microseconds since the epoch (a Lua double holds them
//! exactly until the year 2255).

use std::sync::LazyLock;

use redis::Script;

/// Takes a concurrency slot in the workspace's and the job's semaphores, a start token from the
/// job's (and optionally the workspace's) rate limiter, and the next caller-ID index, all or
/// nothing.
///
/// Semaphores are sorted sets: member = attempt id, score = lease expiry (µs). Expired leases are
/// reclaimed on every call, which is how a dead worker's slots come back.
///
/// The rate limiters are GCRA with no burst: the key holds the "theoretical arrival time" of the
/// next allowed start; a start is allowed when that time has come, and pushes it one emission
/// interval further. Starts are therefore at least one interval apart, so any one-second window
/// holds at most `rate` of them.
///
/// KEYS: 1 workspace slots, 2 job slots, 3 job rate, 4 workspace rate, 5 caller-ID counter.
/// ARGV: 1 member, 2 lease µs, 3 workspace limit, 4 job limit, 5 job interval µs (0 = none),
/// 6 workspace interval µs (0 = none), 7 caller-ID pool size (0 = none).
/// Returns `{code, wait_ms, caller_index}`: code 1 acquired, 0 rate-limited for `wait_ms`,
/// -1 job full, -2 workspace full. `caller_index` is -1 when there is no pool.
pub static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local member = ARGV[1]
local lease = tonumber(ARGV[2])
local ttl_ms = math.ceil(lease / 1000) * 2
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZSCORE', KEYS[2], member) then
  -- Already ours (the caller retried after a lost reply): renew and succeed without a token.
  redis.call('ZADD', KEYS[1], now + lease, member)
  redis.call('ZADD', KEYS[2], now + lease, member)
  return {1, 0, -1}
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return {-2, 0, -1} end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return {-1, 0, -1} end
local ji = tonumber(ARGV[5])
local wi = tonumber(ARGV[6])
local jtat = now
local wtat = now
if ji > 0 then
  jtat = math.max(tonumber(redis.call('GET', KEYS[3]) or '0'), now)
end
if wi > 0 then
  wtat = math.max(tonumber(redis.call('GET', KEYS[4]) or '0'), now)
end
local wait = math.max(jtat, wtat) - now
if wait > 0 then return {0, math.ceil(wait / 1000), -1} end
if ji > 0 then redis.call('SET', KEYS[3], string.format('%.0f', jtat + ji), 'PX', math.ceil(ji / 1000) + 1000) end
if wi > 0 then redis.call('SET', KEYS[4], string.format('%.0f', wtat + wi), 'PX', math.ceil(wi / 1000) + 1000) end
redis.call('ZADD', KEYS[1], now + lease, member)
redis.call('ZADD', KEYS[2], now + lease, member)
redis.call('PEXPIRE', KEYS[1], ttl_ms)
redis.call('PEXPIRE', KEYS[2], ttl_ms)
local idx = -1
local pool = tonumber(ARGV[7])
if pool > 0 then
  idx = (redis.call('INCR', KEYS[5]) - 1) % pool
  redis.call('PEXPIRE', KEYS[5], 86400000)
end
return {1, 0, idx}
"#,
    )
});

/// Extends one lease in both semaphores. A plain `ZADD` (not `XX`): after a Redis flush the
/// holders put their calls back into the count within one renewal period, so the limits hold
/// again without waiting for calls to end.
///
/// Sent with `EVAL` in a pipeline (one round trip renews every lease a worker holds); it is
/// short enough that sending its body each time costs nothing and never fails with `NOSCRIPT`.
///
/// KEYS: 1 workspace slots, 2 job slots. ARGV: 1 member, 2 lease µs.
pub const RENEW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease / 1000) * 2)
redis.call('PEXPIRE', KEYS[2], math.ceil(lease / 1000) * 2)
return 1
"#;

/// Gives a slot back and tells every worker that the workspace has room.
///
/// KEYS: 1 workspace slots, 2 job slots. ARGV: 1 member, 2 channel, 3 workspace id.
/// Returns how many of the two sets held the member.
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = redis.call('ZREM', KEYS[1], ARGV[1]) + redis.call('ZREM', KEYS[2], ARGV[1])
if n > 0 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return n
"#,
    )
});
