//! Basic auth against the bcrypt hashes of `basic_auth_users`, and `rate_limit`, as
//! exporter-toolkit applies them to every request.
//!
//! bcrypt is slow by design (tens of milliseconds at cost 10), so outcomes are cached, as
//! exporter-toolkit caches them: a scraper presenting the same credentials every 15 s pays
//! for one check. The cache is bounded, keyed by a SHA-256 digest (never the password
//! itself), and includes the stored hash, so a changed password invalidates its entries.
//! Uncached checks run one at a time on a blocking thread, and only a bounded number wait:
//! a flood of wrong passwords costs one core and gets 503s, never threads or memory.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use base64::Engine as _;
use lru::LruCache;
use tokio::sync::Semaphore;

use super::web_config::RateLimit;

/// Cached check outcomes. A scraper fleet is a handful of users; 256 covers it many times
/// over at ~50 bytes an entry.
const CACHE_ENTRIES: usize = 256;

/// Uncached checks allowed to wait for the bcrypt thread; beyond this a request gets 503.
/// At ~70 ms a check this is a couple of seconds of queue.
const MAX_PENDING_CHECKS: usize = 32;

/// A bcrypt hash of a password nobody has, checked for unknown users so that the time taken
/// does not tell which user names exist (exporter-toolkit does the same).
const DECOY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

/// The outcome of an authentication attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AuthOutcome {
    /// Let the request through.
    Allowed,
    /// 401: no, malformed or wrong credentials.
    Denied,
    /// 503: too many uncached checks waiting.
    Busy,
}

/// Checks credentials; one per server, surviving config reloads.
pub(crate) struct Authenticator {
    cache: Mutex<LruCache<[u8; 32], bool>>,
    /// Permits to wait for a check.
    pending: Semaphore,
    /// The one bcrypt computation running.
    running: tokio::sync::Mutex<()>,
}

impl Authenticator {
    pub(crate) fn new() -> Authenticator {
        Authenticator {
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN),
            )),
            pending: Semaphore::new(MAX_PENDING_CHECKS),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Checks an `Authorization` header against `users`.
    pub(crate) async fn check(
        &self,
        users: &BTreeMap<String, String>,
        header: Option<&HeaderValue>,
    ) -> AuthOutcome {
        let Some((user, pass)) = header.and_then(parse_basic) else {
            return AuthOutcome::Denied;
        };
        let (hash, known) = match users.get(&user) {
            Some(h) => (h.clone(), true),
            None => (DECOY_HASH.to_string(), false),
        };
        let key = cache_key(&user, &hash, &pass);
        if let Some(ok) = self.cache_get(&key) {
            return outcome(ok && known);
        }
        let Ok(_waiting) = self.pending.try_acquire() else {
            return AuthOutcome::Busy;
        };
        let _running = self.running.lock().await;
        // Another request may have checked the same credentials while this one waited.
        if let Some(ok) = self.cache_get(&key) {
            return outcome(ok && known);
        }
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pass, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        self.cache_put(key, ok);
        outcome(ok && known)
    }

    fn cache_get(&self, key: &[u8; 32]) -> Option<bool> {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        c.get(key).copied()
    }

    fn cache_put(&self, key: [u8; 32], ok: bool) {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        c.put(key, ok);
    }
}

fn outcome(ok: bool) -> AuthOutcome {
    if ok {
        AuthOutcome::Allowed
    } else {
        AuthOutcome::Denied
    }
}

/// Length-prefixed fields, so ("ab", "c") and ("a", "bc") differ.
fn cache_key(user: &str, hash: &str, pass: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for field in [user.as_bytes(), hash.as_bytes(), pass.as_bytes()] {
        ctx.update(&(field.len() as u64).to_le_bytes());
        ctx.update(field);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// `Basic base64(user:password)`; the scheme is case-insensitive (RFC 7617).
fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let s = value.to_str().ok()?;
    let (scheme, rest) = s.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Go's `rate.Limiter`: a bucket of `burst` tokens refilled one per `interval`.
pub(crate) struct RateLimiter {
    state: Mutex<Option<(RateLimit, f64, Instant)>>,
}

impl RateLimiter {
    pub(crate) fn new() -> RateLimiter {
        RateLimiter {
            state: Mutex::new(None),
        }
    }

    /// Takes a token under `limit` (the configuration may change between calls: a new
    /// limit starts with a full bucket).
    pub(crate) fn allow(&self, limit: RateLimit) -> bool {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (cur, tokens, last) = match st.take() {
            Some((l, t, at)) if l == limit => (l, t, at),
            _ => (limit, f64::from(limit.burst), now),
        };
        let refill = now.duration_since(last).as_secs_f64()
            / cur.interval.max(Duration::from_nanos(1)).as_secs_f64();
        let tokens = (tokens + refill).min(f64::from(cur.burst));
        let (allowed, left) = if tokens >= 1.0 {
            (true, tokens - 1.0)
        } else {
            (false, tokens)
        };
        *st = Some((cur, left, now));
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, pass: &str) -> HeaderValue {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        HeaderValue::from_str(&format!("Basic {b}")).unwrap()
    }

    fn users() -> BTreeMap<String, String> {
        BTreeMap::from([("alice".to_string(), bcrypt::hash("s3cret", 4).unwrap())])
    }

    #[tokio::test]
    async fn right_wrong_and_missing_credentials() {
        let a = Authenticator::new();
        let u = users();
        let right = header("alice", "s3cret");
        assert_eq!(a.check(&u, Some(&right)).await, AuthOutcome::Allowed);
        // Cached the second time, same answer.
        assert_eq!(a.check(&u, Some(&right)).await, AuthOutcome::Allowed);
        assert_eq!(
            a.check(&u, Some(&header("alice", "nope"))).await,
            AuthOutcome::Denied
        );
        assert_eq!(
            a.check(&u, Some(&header("bob", "s3cret"))).await,
            AuthOutcome::Denied
        );
        assert_eq!(a.check(&u, None).await, AuthOutcome::Denied);
        let bearer = HeaderValue::from_static("Bearer abc");
        assert_eq!(a.check(&u, Some(&bearer)).await, AuthOutcome::Denied);
    }

    #[tokio::test]
    async fn a_changed_hash_is_not_served_from_the_cache() {
        let a = Authenticator::new();
        let right = header("alice", "s3cret");
        assert_eq!(a.check(&users(), Some(&right)).await, AuthOutcome::Allowed);
        let changed = BTreeMap::from([("alice".to_string(), bcrypt::hash("other", 4).unwrap())]);
        assert_eq!(a.check(&changed, Some(&right)).await, AuthOutcome::Denied);
    }

    #[test]
    fn cache_keys_separate_fields() {
        assert_ne!(cache_key("ab", "h", "c"), cache_key("a", "h", "bc"));
    }

    #[test]
    fn password_may_contain_colons() {
        assert_eq!(
            parse_basic(&header("u", "a:b")),
            Some(("u".into(), "a:b".into()))
        );
    }

    #[test]
    fn rate_limit_bucket() {
        let r = RateLimiter::new();
        let l = RateLimit {
            interval: Duration::from_secs(3600),
            burst: 2,
        };
        assert!(r.allow(l));
        assert!(r.allow(l));
        assert!(!r.allow(l));
        let none = RateLimit {
            interval: Duration::from_secs(1),
            burst: 0,
        };
        assert!(!r.allow(none));
    }
}
