//! A fleet-wide token bucket in Redis: the generic cell rate algorithm (GCRA) the dial worker
//! paces call starts with (`dial-worker/src/limits/scripts.rs`, `RATE`), here with a burst, for
//! anything else that must be limited across every replica at once (the gateway's requests per
//! workspace).
//!
//! The key holds one number, the "theoretical arrival time" (TAT) of the next request if
//! requests came exactly one emission interval `T = 1 / rate` apart. A request is allowed when
//! taking it would not push the TAT more than `burst · T` ahead of now; allowing it moves the
//! TAT one interval on. So a quiet key lets `burst` requests through at once and then `rate`
//! per second, and a refused request learns exactly how long to wait. One key, one `SET` per
//! allowed request, expiring by itself once the bucket is full again. The clock is Redis's own
//! (`TIME`), so the replicas' clocks never matter.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionLike;

/// A rate and the burst allowed on top of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Requests per second, sustained (at least 1).
    pub per_second: u32,
    /// How many may come at once after a quiet spell (at least 1).
    pub burst: u32,
}

/// KEYS: 1 the bucket. ARGV: 1 emission interval µs, 2 burst. Returns 0 when taken, else the
/// µs until a request would be.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if now < allow_at then return math.ceil(allow_at - now) end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
"#,
    )
});

/// Takes one request from the bucket at `key`: `Ok(None)` when allowed, `Ok(Some(wait))` when
/// over the limit (`wait` until the next request would be allowed).
pub async fn take<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    limit: Limit,
) -> Result<Option<Duration>, redis::RedisError> {
    let interval_us = 1_000_000 / u64::from(limit.per_second.max(1));
    let wait_us: u64 = TAKE
        .key(key)
        .arg(interval_us.max(1))
        .arg(limit.burst.max(1))
        .invoke_async(conn)
        .await?;
    Ok((wait_us > 0).then(|| Duration::from_micros(wait_us)))
}
