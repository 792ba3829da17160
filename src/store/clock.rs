//! A coarse clock the hot path can read for free.
//!
//! Every event stamps its series with "now" so TTL expiry can find idle series. Reading the
//! system clock per event would cost a vDSO call per line; instead a ticker (the store's
//! maintenance thread) advances this clock a few times a second and events copy the value.
//! Tests drive the clock by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a real clock is ticked (by the store's `statsgate-clock` thread): the most a
/// stamp can lag real time.
pub const TICK: Duration = Duration::from_millis(100);

/// Milliseconds since the clock's origin, advanced by [`CoarseClock::tick`] or set by tests.
#[derive(Debug)]
pub struct CoarseClock {
    origin: Instant,
    now_ms: AtomicU64,
    manual: bool,
}

impl CoarseClock {
    /// A clock that follows real time when ticked.
    pub fn real() -> Self {
        CoarseClock {
            origin: Instant::now(),
            now_ms: AtomicU64::new(0),
            manual: false,
        }
    }

    /// A clock that only moves when a test calls [`CoarseClock::advance`].
    pub fn manual() -> Self {
        CoarseClock {
            origin: Instant::now(),
            now_ms: AtomicU64::new(0),
            manual: true,
        }
    }

    /// The current coarse time in milliseconds.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    /// How far behind real time a reading may be: [`TICK`] for a real clock, 0 for a manual
    /// one. Expiry waits this much longer, so a series never expires before its TTL.
    pub fn lag_ms(&self) -> u64 {
        if self.manual {
            0
        } else {
            TICK.as_millis() as u64
        }
    }

    /// Catches up with real time (no-op for a manual clock).
    pub fn tick(&self) {
        if !self.manual {
            let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.now_ms.fetch_max(ms, Ordering::Relaxed);
        }
    }

    /// Moves a manual clock forward.
    pub fn advance(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// The real instant matching a coarse time, for estimators that need an `Instant`.
    pub fn instant_at(&self, ms: u64) -> Instant {
        self.origin + std::time::Duration::from_millis(ms)
    }
}
