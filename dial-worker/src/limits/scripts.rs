//! The Lua scripts behind the limits. Each runs atomically inside Redis, so every worker of the
//! fleet sees one consistent count, and each reads the clock with `TIME` so the workers' own
//! clocks (which may drift apart) never matter.
//!
//! All times inside the scripts are microseconds since the epoch (a Lua double holds them
//! exactly until the year 2255).

use std::sync::LazyLock;

use redis::Script;

/// Takes a concurrency slot in the workspace's and the job's semaphores and the next caller-ID
/// index, all or nothing.
///
/// Semaphores are sorted sets: member = attempt id, score = lease expiry (µs). Only live leases
/// count (`ZCOUNT` above now, O(log N)), which is how a dead worker's slots come back; expired
/// members are swept [`SWEEP`] at a time per call, so no call's cost grows with how many expired
/// at once (a crashed worker's thousand slots), and the set never holds more than the live
/// leases and a backlog that each call shrinks.
///
/// The semaphores carry a generation mark (KEYS 4). When it is missing, Redis lost the counts
/// (a flush, a restart without persistence, the keys deleted): the sets are empty although
/// calls are still in flight, and a slot taken now could overshoot the limit. So the fleet
/// takes no new slot for one rebuild window (KEYS 5 holds its end), long enough for every
/// holder's renewal pass to put its live leases back (see [`RENEW`]); the first try after the
/// window sets the mark again. A process's very first try (ARGV 6 = 1) on a Redis that has no
/// mark and no window running sets the mark at once: a fresh Redis, not a flushed one, or the
/// whole fleet would pause once at every start.
///
/// KEYS: 1 workspace slots, 2 job slots, 3 caller-ID counter, 4 generation mark, 5 rebuild
/// window end.
/// ARGV: 1 member, 2 lease µs, 3 workspace limit, 4 job limit, 5 caller-ID pool size (0 = none),
/// 6 first try of this process (1/0), 7 rebuild window µs.
/// Returns `{code, caller_index}`: code 1 acquired, -1 job full, -2 workspace full, -3 counts
/// being rebuilt after a flush, -4 the flush found by this very try: the window started, and
/// this caller rebuilds the counts from the database (see [`super::rebuild`]), which may then
/// shorten it ([`REBUILT`]); `caller_index` is -1 when there is no pool.
pub static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"
{SWEEP_FN}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local member = ARGV[1]
local lease = tonumber(ARGV[2])
local ttl_ms = math.ceil(lease / 1000) * 2
sweep(KEYS[1], now)
sweep(KEYS[2], now)
local live = string.format('(%.0f', now)
local mine = redis.call('ZSCORE', KEYS[2], member)
if mine and tonumber(mine) > now then
  -- Already ours (the caller retried after a lost reply): renew and succeed.
  redis.call('ZADD', KEYS[1], now + lease, member)
  redis.call('ZADD', KEYS[2], now + lease, member)
  return {{1, -1}}
end
if not redis.call('GET', KEYS[4]) then
  local window_end = redis.call('GET', KEYS[5])
  if window_end then
    if now < tonumber(window_end) then return {{-3, -1}} end
    redis.call('SET', KEYS[4], string.format('%.0f', now))
    redis.call('DEL', KEYS[5])
  elseif ARGV[6] == '1' then
    redis.call('SET', KEYS[4], string.format('%.0f', now))
  else
    local window = tonumber(ARGV[7])
    redis.call('SET', KEYS[5], string.format('%.0f', now + window), 'PX', math.ceil(window / 1000) + 60000)
    return {{-4, -1}}
  end
end
if redis.call('ZCOUNT', KEYS[1], live, '+inf') >= tonumber(ARGV[3]) then return {{-2, -1}} end
if redis.call('ZCOUNT', KEYS[2], live, '+inf') >= tonumber(ARGV[4]) then return {{-1, -1}} end
redis.call('ZADD', KEYS[1], now + lease, member)
redis.call('ZADD', KEYS[2], now + lease, member)
redis.call('PEXPIRE', KEYS[1], ttl_ms)
redis.call('PEXPIRE', KEYS[2], ttl_ms)
local idx = -1
local pool = tonumber(ARGV[5])
if pool > 0 then
  idx = (redis.call('INCR', KEYS[3]) - 1) % pool
  redis.call('PEXPIRE', KEYS[3], 86400000)
end
return {{1, idx}}
"#
    ))
});

/// Takes a start token from the job's and (optionally) the workspace's rate limiters, both or
/// neither.
///
/// GCRA with no burst: each key holds the "theoretical arrival time" of the next allowed start;
/// a start is allowed when that time has come, and pushes it one emission interval further.
/// Starts are therefore at least one interval apart, so any one-second window holds at most
/// `rate` of them. Taken immediately before the carrier request, so nothing slow sits between
/// the token and the call it paces.
///
/// A flush loses the last start's time as well: a start right after it could follow the one
/// before it closer than one interval. So while the generation mark is missing (see
/// [`ACQUIRE`]) a limiter found empty is parked one interval ahead: the first start after a
/// flush waits one interval. Only a process that has already taken slots (ARGV 3 = 1) parks: on
/// a fresh Redis the mark is set by the first slot taken.
///
/// KEYS: 1 job rate, 2 workspace rate, 3 generation mark. ARGV: 1 job interval µs (0 = none),
/// 2 workspace interval µs (0 = none), 3 whether this process has taken slots (1/0). Returns 0
/// when taken, else the ms to wait.
pub static RATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ji = tonumber(ARGV[1])
local wi = tonumber(ARGV[2])
if ARGV[3] == '1' and not redis.call('GET', KEYS[3]) then
  if ji > 0 and redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SET', KEYS[1], string.format('%.0f', now + ji), 'PX', math.ceil(ji / 1000) + 1000)
  end
  if wi > 0 and redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('SET', KEYS[2], string.format('%.0f', now + wi), 'PX', math.ceil(wi / 1000) + 1000)
  end
end
local jtat = now
local wtat = now
if ji > 0 then jtat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now) end
if wi > 0 then wtat = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), now) end
local wait = math.max(jtat, wtat) - now
if wait > 0 then return math.max(1, math.ceil(wait / 1000)) end
if ji > 0 then redis.call('SET', KEYS[1], string.format('%.0f', jtat + ji), 'PX', math.ceil(ji / 1000) + 1000) end
if wi > 0 then redis.call('SET', KEYS[2], string.format('%.0f', wtat + wi), 'PX', math.ceil(wi / 1000) + 1000) end
return 0
"#,
    )
});

/// Sent with `EVAL` in a pipeline (one round trip renews every lease a worker holds); it is
/// short enough that sending its body each time costs nothing and never fails with `NOSCRIPT`.
///
/// A renewal re-adds a missing member (that is how the counts come back after a Redis flush),
/// *unless* the member was released: a released slot leaves a tombstone for one lease period,
/// so a renewal racing the release (the renewer read "still in flight" just before another
/// worker recorded the outcome) can never bring the slot back to life.
///
/// KEYS: 1 workspace slots, 2 job slots, 3 job tombstones. ARGV: 1 member, 2 lease µs.
/// Returns 1 when renewed, 0 when the slot was released.
pub const RENEW: &str = r#"
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease / 1000) * 2)
redis.call('PEXPIRE', KEYS[2], math.ceil(lease / 1000) * 2)
return 1
"#;

/// Gives a slot back, leaves its tombstone (see [`RENEW`]) and tells every worker that the
/// workspace has room. Used through [`RELEASE`] for one slot and with `EVAL` in a pipeline for
/// many.
///
/// Tombstones older than a lease are swept [`SWEEP`] at a time (each release adds one), so the
/// cost of a release never grows with how many slots the job released lately.
///
/// KEYS: 1 workspace slots, 2 job slots, 3 job tombstones. ARGV: 1 member, 2 channel,
/// 3 workspace id, 4 lease µs. Returns how many of the two sets held the member.
pub static RELEASE_LUA: LazyLock<String> = LazyLock::new(|| {
    format!(
        r#"
{SWEEP_FN}
local n = redis.call('ZREM', KEYS[1], ARGV[1]) + redis.call('ZREM', KEYS[2], ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lease = tonumber(ARGV[4])
redis.call('ZADD', KEYS[3], now, ARGV[1])
sweep(KEYS[3], now - lease)
redis.call('PEXPIRE', KEYS[3], math.ceil(lease / 1000) * 2)
if n > 0 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return n
"#
    )
});

/// [`RELEASE_LUA`], loaded once and called by its hash.
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(&RELEASE_LUA));

/// The most expired members one call sweeps from a sorted set. Each call adds at most one
/// member, so sweeping up to this many keeps any backlog shrinking while bounding the call.
pub const SWEEP: usize = 64;

/// `sweep(key, upto)`: removes up to [`SWEEP`] members scored at or below `upto` (the `LIMIT`
/// is spelled out; a test checks it is [`SWEEP`]).
const SWEEP_FN: &str = r#"
local function sweep(key, upto)
  local gone = redis.call('ZRANGEBYSCORE', key, '-inf', string.format('%.0f', upto), 'LIMIT', 0, 64)
  if #gone > 0 then redis.call('ZREM', key, unpack(gone)) end
end
"#;

/// Ends a rebuild: the counts are back from the database, so the window that keeps new slots
/// out shrinks to ARGV 1 µs from now (never grows), unless the mark is back already.
///
/// KEYS: 1 generation mark, 2 rebuild window end. ARGV: 1 margin µs. Returns 1 when shortened.
pub const REBUILT: &str = r#"
if redis.call('GET', KEYS[1]) then return 0 end
local window_end = redis.call('GET', KEYS[2])
if not window_end then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local new_end = now + tonumber(ARGV[1])
if new_end >= tonumber(window_end) then return 0 end
redis.call('SET', KEYS[2], string.format('%.0f', new_end), 'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 60000)
return 1
"#;

/// Sent with `EVAL` in a pipeline: renews an adopted slot only if its lease is still running.
/// Unlike [`RENEW`] it never re-adds a lapsed member: a hand-over nobody took up in time is a
/// crash (the slot came back, and someone else may hold it now), not a Redis flush.
///
/// KEYS: 1 workspace slots, 2 job slots. ARGV: 1 member, 2 lease µs.
/// Returns 1 when adopted, 0 when the lease had lapsed or the slot was released.
pub const ADOPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) <= now then return 0 end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease / 1000) * 2)
redis.call('PEXPIRE', KEYS[2], math.ceil(lease / 1000) * 2)
return 1
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_is_bounded_by_sweep() {
        assert!(SWEEP_FN.contains(&format!("'LIMIT', 0, {SWEEP})")));
        assert!(RELEASE_LUA.contains("sweep(KEYS[3], now - lease)"));
        assert!(!RELEASE_LUA.contains("ZREMRANGEBYSCORE"));
    }
}
