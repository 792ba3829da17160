//! One URL's bounded queue of encoded requests, grouped by snapshot.
//!
//! The bound is in samples and covers what waits and what is in flight; pushing past it
//! drops the oldest waiting requests (the newest values matter most, and dropping from
//! the front keeps each series' samples in time order). Memory is therefore bounded by the
//! capacity plus the snapshot being sent.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// One request: a snappy-compressed `WriteRequest`, shared by every URL's queue.
#[derive(Clone, Debug)]
pub(crate) struct Batch {
    /// The compressed body.
    pub(crate) body: Bytes,
    /// Samples in it.
    pub(crate) samples: usize,
}

#[derive(Debug, Default)]
struct State {
    snapshots: VecDeque<VecDeque<Batch>>,
    waiting: usize,
    in_flight: usize,
    closed: bool,
}

/// A bounded FIFO of snapshots.
#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<State>,
    capacity: usize,
    ready: Notify,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> Queue {
        Queue {
            state: Mutex::new(State::default()),
            capacity,
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every mutation below is a few field updates that cannot panic halfway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a snapshot's requests; returns how many samples were dropped to stay within
    /// the capacity (oldest waiting requests first).
    pub(crate) fn push(&self, batches: Vec<Batch>) -> usize {
        if batches.is_empty() {
            return 0;
        }
        let mut st = self.lock();
        st.waiting += batches.iter().map(|b| b.samples).sum::<usize>();
        st.snapshots.push_back(batches.into());
        let mut dropped = 0;
        while st.waiting + st.in_flight > self.capacity {
            let Some(front) = st.snapshots.front_mut() else {
                break;
            };
            match front.pop_front() {
                Some(b) => {
                    st.waiting -= b.samples;
                    dropped += b.samples;
                }
                None => {
                    st.snapshots.pop_front();
                }
            }
        }
        while st.snapshots.front().is_some_and(|s| s.is_empty()) {
            st.snapshots.pop_front();
        }
        drop(st);
        self.ready.notify_one();
        dropped
    }

    /// Takes the oldest snapshot's requests, waiting for one; `None` once the queue is
    /// closed and empty. Its samples count as in flight until [`done`](Self::done).
    pub(crate) async fn next_snapshot(&self) -> Option<Vec<Batch>> {
        loop {
            // Registered before looking, so a push between the look and the wait is seen.
            let notified = self.ready.notified();
            {
                let mut st = self.lock();
                if let Some(s) = st.snapshots.pop_front() {
                    let n: usize = s.iter().map(|b| b.samples).sum();
                    st.waiting -= n;
                    st.in_flight += n;
                    return Some(s.into());
                }
                if st.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Marks `samples` in flight as finished (sent or dropped).
    pub(crate) fn done(&self, samples: usize) {
        let mut st = self.lock();
        st.in_flight = st.in_flight.saturating_sub(samples);
    }

    /// Samples waiting or in flight.
    pub(crate) fn held(&self) -> usize {
        let st = self.lock();
        st.waiting + st.in_flight
    }

    /// No more pushes: [`next_snapshot`](Self::next_snapshot) returns `None` once empty.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_waiters();
        self.ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(samples: usize) -> Batch {
        Batch {
            body: Bytes::from(vec![samples as u8]),
            samples,
        }
    }

    fn sizes(s: &[Batch]) -> Vec<usize> {
        s.iter().map(|b| b.samples).collect()
    }

    #[tokio::test]
    async fn drops_the_oldest_requests_past_the_capacity() {
        let q = Queue::new(10);
        assert_eq!(q.push(vec![batch(3), batch(4)]), 0);
        assert_eq!(q.push(vec![batch(2)]), 0);
        assert_eq!(q.held(), 9);
        // 9 + 5 > 10: the two oldest requests (3, then 4) make room.
        assert_eq!(q.push(vec![batch(5)]), 7);
        assert_eq!(q.held(), 7);
        assert_eq!(sizes(&q.next_snapshot().await.unwrap()), vec![2]);
        // In flight still counts against the capacity.
        assert_eq!(q.held(), 7);
        assert_eq!(q.push(vec![batch(4)]), 5);
        q.done(2);
        assert_eq!(q.held(), 4);
        assert_eq!(sizes(&q.next_snapshot().await.unwrap()), vec![4]);
    }

    #[tokio::test]
    async fn close_ends_the_stream_after_the_rest() {
        let q = std::sync::Arc::new(Queue::new(100));
        q.push(vec![batch(1), batch(2)]);
        q.close();
        assert_eq!(sizes(&q.next_snapshot().await.unwrap()), vec![1, 2]);
        assert!(q.next_snapshot().await.is_none());

        let q2 = std::sync::Arc::new(Queue::new(100));
        let waiter = {
            let q2 = q2.clone();
            tokio::spawn(async move { q2.next_snapshot().await.map(|s| sizes(&s)) })
        };
        tokio::task::yield_now().await;
        q2.push(vec![batch(7)]);
        assert_eq!(waiter.await.unwrap(), Some(vec![7]));
    }
}
