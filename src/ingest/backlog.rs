//! Datagrams a receive thread takes off its socket while it is busy, so that a slow stretch
//! (thousands of first sights, a burst of summary merges) empties the kernel's receive buffer
//! into a bounded queue of the thread's own instead of overflowing it.
//!
//! statsd_exporter reads UDP in one goroutine and parses in another, with a queue of
//! `--statsd.udp-packet-queue-size` packets between them. statsgate reads and handles on one
//! thread (no hand-off per datagram, no wake-up of a second thread), and only when handling has
//! kept it from its socket for [`DRAIN_AFTER`] does it read what is queued there, without
//! waiting, into this backlog. Datagrams are handled in the order they arrived: the rest of the
//! current batch first, then the backlog from its front, before the socket is read again.
//!
//! Bounds: at most `datagrams` datagrams (the flag) and [`MAX_BACKLOG_BYTES`] of payload per
//! thread. A full backlog takes nothing more: datagrams then wait in the kernel's buffer and,
//! when that overflows too, are dropped and counted by the kernel as before.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long handling may keep a receive thread from its socket before it reads what is queued
/// there into its backlog. In the steady state a batch of 32 packed datagrams takes well under
/// this (about 0.1 ms), so the backlog stays unused; 1 ms of a 2M lines/s flow is ~190 KB of
/// kernel buffer, a small part of what the default 8 MiB holds.
pub(crate) const DRAIN_AFTER: Duration = Duration::from_millis(1);

/// The most payload bytes one receive thread's backlog holds: 10,000 datagrams (the flag's
/// default) of 1,400 bytes (a packed Envoy or client datagram) with room to spare, and a bound
/// when the datagrams are larger.
pub(crate) const MAX_BACKLOG_BYTES: usize = 16 << 20;

/// Handled datagrams are cleared out of the front once they take this many bytes and more than
/// the queued ones (so each queued byte is moved at most about once per byte handled), so that
/// a backlog that never quite empties does not hold on to them.
const COMPACT_AFTER: usize = 1 << 20;

/// A backlog that drops its storage when it empties, if the storage grew past this: a burst's
/// megabytes are not kept for good.
const KEEP_CAPACITY: usize = 1 << 20;

/// One queued datagram: where its payload sits in the backlog's bytes, and its sender.
#[derive(Clone, Copy)]
struct Entry {
    start: usize,
    len: usize,
    source: Option<IpAddr>,
}

/// A FIFO of datagrams, stored back to back in one buffer.
pub(crate) struct Backlog {
    max_datagrams: usize,
    max_bytes: usize,
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    /// Index of the first entry not yet handed out.
    next: usize,
}

impl Backlog {
    /// A backlog of at most `max_datagrams` datagrams and `max_bytes` bytes of payload (0
    /// datagrams: none is ever queued).
    pub(crate) fn new(max_datagrams: usize, max_bytes: usize) -> Self {
        Backlog {
            max_datagrams,
            max_bytes,
            bytes: Vec::new(),
            entries: Vec::new(),
            next: 0,
        }
    }

    /// Whether this backlog can hold anything at all.
    pub(crate) fn enabled(&self) -> bool {
        self.max_datagrams > 0 && self.max_bytes > 0
    }

    /// Datagrams queued and not yet handed out.
    pub(crate) fn len(&self) -> usize {
        self.entries.len() - self.next
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether one more datagram of `len` bytes fits.
    pub(crate) fn has_room(&self, len: usize) -> bool {
        self.len() < self.max_datagrams && self.queued_bytes() + len <= self.max_bytes
    }

    /// How many more datagrams of `len` bytes (at least 1) fit.
    pub(crate) fn room(&self, len: usize) -> usize {
        let by_count = self.max_datagrams.saturating_sub(self.len());
        let by_bytes = self.max_bytes.saturating_sub(self.queued_bytes()) / len.max(1);
        by_count.min(by_bytes)
    }

    fn queued_bytes(&self) -> usize {
        self.bytes.len() - self.front_start()
    }

    /// Queues a copy of `payload` from `source`; returns false, queuing nothing, when it does
    /// not fit.
    pub(crate) fn push(&mut self, payload: &[u8], source: Option<IpAddr>) -> bool {
        if !self.has_room(payload.len()) {
            return false;
        }
        let handled = self.front_start();
        if handled >= COMPACT_AFTER && handled >= self.bytes.len() - handled {
            self.compact();
        }
        self.entries.push(Entry {
            start: self.bytes.len(),
            len: payload.len(),
            source,
        });
        self.bytes.extend_from_slice(payload);
        true
    }

    /// The oldest queued datagram and its sender, without removing it; `None` when empty.
    pub(crate) fn front(&self) -> Option<(&[u8], Option<IpAddr>)> {
        let entry = self.entries.get(self.next)?;
        Some((
            &self.bytes[entry.start..entry.start + entry.len],
            entry.source,
        ))
    }

    /// Removes the oldest queued datagram (the one [`front`](Self::front) gave).
    pub(crate) fn pop(&mut self) {
        if self.next < self.entries.len() {
            self.next += 1;
        }
        if self.next == self.entries.len() {
            self.next = 0;
            if self.bytes.capacity() > KEEP_CAPACITY {
                self.bytes = Vec::new();
                self.entries = Vec::new();
            } else {
                self.bytes.clear();
                self.entries.clear();
            }
        }
    }

    /// Where the oldest queued datagram starts in `bytes`; everything before it was handled.
    fn front_start(&self) -> usize {
        self.entries
            .get(self.next)
            .map_or(self.bytes.len(), |entry| entry.start)
    }

    /// Moves the queued datagrams to the front of the buffers.
    fn compact(&mut self) {
        let cut = self.front_start();
        self.bytes.drain(..cut);
        self.entries.drain(..self.next);
        self.next = 0;
        for entry in &mut self.entries {
            entry.start -= cut;
        }
    }
}

/// Decides, cheaply and between datagrams, when a receive thread has been away from its socket
/// for [`DRAIN_AFTER`].
pub(crate) struct DrainClock {
    last_read: Instant,
    /// Datagrams and bytes handled since the clock was last looked at: reading it after every
    /// datagram would cost ~25 ns each, a few per cent of a one-line datagram's handling.
    datagrams: usize,
    bytes: usize,
}

/// The clock is read after this many datagrams, or after [`LOOK_EVERY_BYTES`] of payload,
/// whichever comes first: a small datagram with a first sight costs a few microseconds, so 8
/// of them are far below [`DRAIN_AFTER`].
const LOOK_EVERY_DATAGRAMS: usize = 8;
const LOOK_EVERY_BYTES: usize = 2048;

impl DrainClock {
    pub(crate) fn new() -> Self {
        DrainClock {
            last_read: Instant::now(),
            datagrams: 0,
            bytes: 0,
        }
    }

    /// The socket was just read.
    pub(crate) fn read(&mut self) {
        self.last_read = Instant::now();
        self.datagrams = 0;
        self.bytes = 0;
    }

    /// A datagram of `len` bytes was handled; returns whether the socket is due to be read.
    pub(crate) fn handled(&mut self, len: usize) -> bool {
        self.datagrams += 1;
        self.bytes += len;
        if self.datagrams < LOOK_EVERY_DATAGRAMS && self.bytes < LOOK_EVERY_BYTES {
            return false;
        }
        self.datagrams = 0;
        self.bytes = 0;
        self.last_read.elapsed() >= DRAIN_AFTER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_all(backlog: &mut Backlog) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((payload, _)) = backlog.front() {
            out.push(payload.to_vec());
            backlog.pop();
        }
        out
    }

    #[test]
    fn datagrams_come_out_in_order_with_their_senders() {
        let mut backlog = Backlog::new(10, 1000);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(backlog.push(b"one:1|c", Some(a)));
        assert!(backlog.push(b"", None));
        assert!(backlog.push(b"three:3|c", None));
        assert_eq!(backlog.len(), 3);
        assert_eq!(backlog.front(), Some((&b"one:1|c"[..], Some(a))));
        backlog.pop();
        assert!(backlog.push(b"four:4|c", Some(a)));
        assert_eq!(
            drain_all(&mut backlog),
            [&b""[..], b"three:3|c", b"four:4|c"]
        );
        assert!(backlog.is_empty());
        assert_eq!(backlog.front(), None);
    }

    #[test]
    fn both_bounds_hold() {
        let mut backlog = Backlog::new(3, 10);
        assert!(backlog.push(b"aaaa", None));
        assert!(backlog.push(b"bbbb", None));
        assert!(!backlog.push(b"ccc", None), "11 bytes > 10");
        assert!(backlog.push(b"cc", None));
        assert!(!backlog.push(b"", None), "4th datagram > 3");
        backlog.pop();
        assert!(
            backlog.push(b"dddd", None),
            "room again once one is handled"
        );
        assert_eq!(drain_all(&mut backlog), [&b"bbbb"[..], b"cc", b"dddd"]);

        let none = Backlog::new(0, MAX_BACKLOG_BYTES);
        assert!(!none.enabled());
        assert!(!none.has_room(0));
        assert_eq!(none.room(1), 0);

        let mut backlog = Backlog::new(10, 100);
        assert_eq!(backlog.room(30), 3, "bytes bound");
        assert_eq!(backlog.room(1), 10, "count bound");
        assert!(backlog.push(&[0; 50], None));
        assert_eq!(backlog.room(30), 1);
        assert_eq!(backlog.room(0), 9);
    }

    /// A backlog that is handled from the front while it fills at the back never empties;
    /// compaction keeps its storage to what is queued, and the order survives it.
    #[test]
    fn a_backlog_that_never_empties_stays_bounded_and_in_order() {
        let mut backlog = Backlog::new(100, 64 << 10);
        let mut expected = std::collections::VecDeque::new();
        let mut seen = 0u64;
        for i in 0..20_000u64 {
            let payload = format!("series{i}:{i}|c").repeat(20);
            assert!(backlog.push(payload.as_bytes(), None));
            expected.push_back(payload);
            if backlog.len() > 50 {
                let (front, _) = backlog.front().unwrap();
                assert_eq!(front, expected.pop_front().unwrap().as_bytes());
                backlog.pop();
                seen += 1;
            }
            assert!(backlog.bytes.len() <= 2 * COMPACT_AFTER + (64 << 10));
        }
        assert_eq!(seen, 20_000 - 50);
        let rest: Vec<Vec<u8>> = expected.into_iter().map(String::into_bytes).collect();
        assert_eq!(drain_all(&mut backlog), rest);
    }

    #[test]
    fn storage_grown_by_a_burst_is_given_back_when_it_empties() {
        let mut backlog = Backlog::new(10_000, MAX_BACKLOG_BYTES);
        let datagram = [b'x'; 1400];
        for _ in 0..2000 {
            assert!(backlog.push(&datagram, None));
        }
        assert!(backlog.bytes.capacity() > KEEP_CAPACITY);
        drain_all(&mut backlog);
        assert_eq!(backlog.bytes.capacity(), 0);
    }

    #[test]
    fn the_clock_is_read_every_few_datagrams_or_kilobytes() {
        let mut clock = DrainClock::new();
        clock.last_read -= DRAIN_AFTER * 2;
        for _ in 1..LOOK_EVERY_DATAGRAMS {
            assert!(!clock.handled(10), "not looked at yet");
        }
        assert!(clock.handled(10), "8th datagram: looked at, and due");
        assert!(
            clock.handled(LOOK_EVERY_BYTES),
            "a large datagram: looked at"
        );
        clock.read();
        for _ in 0..100 {
            assert!(!clock.handled(LOOK_EVERY_BYTES), "just read");
        }
    }
}
