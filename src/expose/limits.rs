//! What the server knows of each connection, and the limits built on it: the per-connection
//! watchdog (header, idle and write deadlines), the connection cap with eviction, and the
//! scrape slots. Pure bookkeeping over atomics and two small mutex-guarded tables; the
//! server in `server.rs` does the I/O.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::server::ServerOptions;

/// How long a scrape must have been stalled by its client before a new scrape may take its
/// slot. A reading client never stalls this long between two chunks; one that does while
/// others are turned away is the one to drop.
pub const SCRAPE_STALL_EVICT: Duration = Duration::from_secs(1);

/// Why the server closed a connection (the `reason` label of
/// `statsgate_http_connections_closed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CloseReason {
    ReadHeaderTimeout = 1,
    IdleTimeout = 2,
    WriteTimeout = 3,
    Evicted = 4,
    ScrapeEvicted = 5,
    Shutdown = 6,
}

impl CloseReason {
    pub(crate) const ALL: [CloseReason; 6] = [
        CloseReason::ReadHeaderTimeout,
        CloseReason::IdleTimeout,
        CloseReason::WriteTimeout,
        CloseReason::Evicted,
        CloseReason::ScrapeEvicted,
        CloseReason::Shutdown,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            CloseReason::ReadHeaderTimeout => "read_header_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::WriteTimeout => "write_timeout",
            CloseReason::Evicted => "evicted",
            CloseReason::ScrapeEvicted => "stalled_scrape_evicted",
            CloseReason::Shutdown => "shutdown",
        }
    }

    fn from_code(c: u8) -> Option<CloseReason> {
        CloseReason::ALL.into_iter().find(|r| *r as u8 == c)
    }
}

/// Milliseconds since the server started, plus one, so that 0 can mean "not set".
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    pub(crate) epoch: Instant,
}

impl Clock {
    pub(crate) fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub(crate) fn instant(&self, ms: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.epoch + Duration::from_millis(ms.saturating_sub(1)))
    }
}

/// What the watchdog, the connection cap and the scrape slots know of one connection.
/// Written by the connection's own task and read by others, so plain atomics: every field
/// is a hint for a deadline, and a stale read only moves a deadline by one check.
#[derive(Debug)]
pub(crate) struct Conn {
    /// A request is being served (from its head being parsed until its body is done).
    busy: AtomicBool,
    /// When `busy` last changed.
    since: AtomicU64,
    /// First byte of the request being waited for; 0 while none arrived.
    first_byte: AtomicU64,
    /// When hyper last asked the response body for data.
    polled: AtomicU64,
    /// The gateway, not the client, is what the response waits for.
    awaiting_us: AtomicBool,
    /// Set (once) to a [`CloseReason`] when something else decides to close it.
    closing: AtomicU8,
    wake: Notify,
}

impl Conn {
    fn new(now: u64) -> Conn {
        Conn {
            busy: AtomicBool::new(false),
            since: AtomicU64::new(now),
            // The first request's header is timed from accept.
            first_byte: AtomicU64::new(now),
            polled: AtomicU64::new(now),
            awaiting_us: AtomicBool::new(false),
            closing: AtomicU8::new(0),
            wake: Notify::new(),
        }
    }

    pub(crate) fn close(&self, reason: CloseReason) {
        if self
            .closing
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.wake.notify_one();
        }
    }

    /// Resolves when something else decides to close this connection, with the reason.
    pub(crate) async fn closed(&self) -> Option<CloseReason> {
        self.wake.notified().await;
        self.close_reason()
    }

    /// A request is being served.
    pub(crate) fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// hyper asked the response body for data (the client took what it had); `pending`:
    /// the body had none ready, so the wait is the gateway's, not the client's.
    pub(crate) fn record_poll(&self, now: u64, pending: bool) {
        self.polled.store(now, Ordering::Release);
        self.awaiting_us.store(pending, Ordering::Release);
    }

    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        CloseReason::from_code(self.closing.load(Ordering::Acquire))
    }

    pub(crate) fn begin_request(&self, now: u64) {
        self.busy.store(true, Ordering::Release);
        self.since.store(now, Ordering::Release);
        self.polled.store(now, Ordering::Release);
        self.awaiting_us.store(true, Ordering::Release);
    }

    pub(crate) fn end_request(&self, now: u64) {
        self.first_byte.store(0, Ordering::Release);
        self.since.store(now, Ordering::Release);
        self.awaiting_us.store(false, Ordering::Release);
        self.busy.store(false, Ordering::Release);
    }

    pub(crate) fn saw_bytes(&self, now: u64) {
        if !self.busy.load(Ordering::Acquire) && self.first_byte.load(Ordering::Acquire) == 0 {
            self.first_byte.store(now, Ordering::Release);
        }
    }

    /// How long the client has left a response waiting (0 when not stalled).
    fn stalled_for(&self, now: u64) -> u64 {
        if self.busy.load(Ordering::Acquire) && !self.awaiting_us.load(Ordering::Acquire) {
            now.saturating_sub(self.polled.load(Ordering::Acquire))
        } else {
            0
        }
    }

    /// The next deadline and what passing it means; `None` means "check again then".
    fn deadline(&self, opts: &ServerOptions) -> (u64, Option<CloseReason>) {
        let ms = |d: Duration| d.as_millis() as u64;
        if self.busy.load(Ordering::Acquire) {
            let polled = self.polled.load(Ordering::Acquire);
            if self.awaiting_us.load(Ordering::Acquire) {
                (polled + ms(opts.write_timeout), None)
            } else {
                (
                    polled + ms(opts.write_timeout),
                    Some(CloseReason::WriteTimeout),
                )
            }
        } else {
            match self.first_byte.load(Ordering::Acquire) {
                0 => (
                    self.since.load(Ordering::Acquire) + ms(opts.idle_timeout),
                    Some(CloseReason::IdleTimeout),
                ),
                first => (
                    first + ms(opts.read_header_timeout),
                    Some(CloseReason::ReadHeaderTimeout),
                ),
            }
        }
    }
}

/// Resolves when the connection has outlived its current deadline.
pub(crate) async fn watchdog(conn: &Conn, clock: Clock, opts: &ServerOptions) -> CloseReason {
    loop {
        let (deadline, reason) = conn.deadline(opts);
        if let Some(reason) = reason
            && clock.now() >= deadline
        {
            return reason;
        }
        // State may have moved the deadline while sleeping; it is recomputed on waking.
        let at = deadline.max(clock.now() + 1);
        tokio::time::sleep_until(clock.instant(at)).await;
    }
}

/// The open connections, for the cap.
pub(crate) struct ConnTable {
    max: usize,
    inner: Mutex<(u64, HashMap<u64, Arc<Conn>>)>,
}

impl ConnTable {
    pub(crate) fn new(max: usize) -> ConnTable {
        ConnTable {
            max,
            inner: Mutex::new((0, HashMap::new())),
        }
    }

    /// Registers a new connection, evicting the one that has waited longest for a request
    /// when the table is full. `None`: every connection is busy; refuse the new one.
    pub(crate) fn admit(&self, now: u64) -> Option<(u64, Arc<Conn>)> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (next_id, conns) = &mut *guard;
        if conns.len() >= self.max {
            let victim = conns
                .iter()
                .filter(|(_, c)| !c.busy.load(Ordering::Acquire))
                // Ids are handed out in accept order: among connections idle since the same
                // millisecond, the one accepted first goes.
                .min_by_key(|(id, c)| (c.since.load(Ordering::Acquire), **id))
                .map(|(id, _)| *id)?;
            // Removed now, so the table counts only connections that stay; the victim's
            // descriptor closes as soon as its task sees the notification.
            if let Some(c) = conns.remove(&victim) {
                c.close(CloseReason::Evicted);
            }
        }
        *next_id += 1;
        let conn = Arc::new(Conn::new(now));
        conns.insert(*next_id, conn.clone());
        Some((*next_id, conn))
    }

    pub(crate) fn remove(&self, id: u64) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.1.remove(&id);
    }
}

/// A taken scrape slot: the generation that took it, and the scrape's connection.
type Slot = Option<(u64, Arc<Conn>)>;

/// Slots for scrapes in flight, and the next generation number.
pub(crate) struct ScrapeSlots {
    inner: Mutex<(u64, Vec<Slot>)>,
}

/// A scrape's slot, freed on drop unless a newcomer has taken it over.
pub(crate) struct ScrapePermit {
    slots: Arc<ScrapeSlots>,
    index: usize,
    generation: u64,
}

impl Drop for ScrapePermit {
    fn drop(&mut self) {
        let mut guard = self.slots.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = guard.1.get_mut(self.index)
            && slot.as_ref().is_some_and(|(g, _)| *g == self.generation)
        {
            *slot = None;
        }
    }
}

impl ScrapeSlots {
    pub(crate) fn new(n: usize) -> Arc<ScrapeSlots> {
        Arc::new(ScrapeSlots {
            inner: Mutex::new((0, vec![None; n.max(1)])),
        })
    }

    /// A slot for `conn`'s scrape: a free one, or the one of the scrape stalled longest
    /// (at least [`SCRAPE_STALL_EVICT`]), whose connection is then closed.
    pub(crate) fn admit(self: &Arc<Self>, conn: &Arc<Conn>, now: u64) -> Option<ScrapePermit> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (next_gen, slots) = &mut *guard;
        let index = match slots.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                let min_stall = SCRAPE_STALL_EVICT.as_millis() as u64;
                let (i, stall) = slots
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.as_ref().map(|(_, c)| (i, c.stalled_for(now))))
                    .max_by_key(|(_, stall)| *stall)?;
                if stall < min_stall {
                    return None;
                }
                if let Some((_, victim)) = &slots[i] {
                    victim.close(CloseReason::ScrapeEvicted);
                }
                i
            }
        };
        *next_gen += 1;
        slots[index] = Some((*next_gen, conn.clone()));
        Some(ScrapePermit {
            slots: self.clone(),
            index,
            generation: *next_gen,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_table_evicts_the_longest_waiting_idle_connection() {
        let t = ConnTable {
            max: 2,
            inner: Mutex::new((0, HashMap::new())),
        };
        let (_, a) = t.admit(10).unwrap();
        let (_, b) = t.admit(20).unwrap();
        b.begin_request(25);
        let (_, _c) = t.admit(30).unwrap();
        assert_eq!(a.close_reason(), Some(CloseReason::Evicted));
        assert_eq!(b.close_reason(), None);
    }

    #[test]
    fn full_table_of_busy_connections_refuses() {
        let t = ConnTable {
            max: 1,
            inner: Mutex::new((0, HashMap::new())),
        };
        let (_, a) = t.admit(1).unwrap();
        a.begin_request(2);
        assert!(t.admit(3).is_none());
        assert_eq!(a.close_reason(), None);
    }

    #[test]
    fn scrape_slots_go_to_stalled_scrapes_only_after_the_stall_bound() {
        let slots = ScrapeSlots::new(1);
        let a = Arc::new(Conn::new(1));
        a.begin_request(1);
        let pa = slots.admit(&a, 1).unwrap();
        // The gateway is still rendering: not the client's fault, never evicted.
        let b = Arc::new(Conn::new(1));
        assert!(slots.admit(&b, 10_000).is_none());
        // The client stopped taking data at t=100.
        a.polled.store(100, Ordering::Release);
        a.awaiting_us.store(false, Ordering::Release);
        assert!(slots.admit(&b, 500).is_none());
        let pb = slots
            .admit(&b, 100 + SCRAPE_STALL_EVICT.as_millis() as u64)
            .unwrap();
        assert_eq!(a.close_reason(), Some(CloseReason::ScrapeEvicted));
        // The evicted scrape's permit no longer frees the slot it lost.
        drop(pa);
        let c = Arc::new(Conn::new(1));
        assert!(slots.admit(&c, 2_000).is_none());
        drop(pb);
        assert!(slots.admit(&c, 2_000).is_some());
    }

    #[test]
    fn deadlines_follow_the_connection_phase() {
        let opts = ServerOptions::default();
        let c = Conn::new(1);
        // A new connection: its first header is due read_header_timeout after accept.
        assert_eq!(
            c.deadline(&opts),
            (10_001, Some(CloseReason::ReadHeaderTimeout))
        );
        c.begin_request(50);
        assert_eq!(c.deadline(&opts).1, None);
        c.awaiting_us.store(false, Ordering::Release);
        assert_eq!(c.deadline(&opts), (30_050, Some(CloseReason::WriteTimeout)));
        c.end_request(100);
        assert_eq!(c.deadline(&opts), (300_100, Some(CloseReason::IdleTimeout)));
        c.saw_bytes(200);
        assert_eq!(
            c.deadline(&opts),
            (10_200, Some(CloseReason::ReadHeaderTimeout))
        );
    }
}
