//! The work queue every reconcile goes through: one entry per key however often it is added,
//! a key re-run after its current reconcile when it changed meanwhile, delayed re-adds, and
//! exponential backoff for keys that keep failing.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, HashSet, VecDeque},
    hash::Hash,
    sync::Mutex,
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

/// Backoff of failing keys: `min_delay * 2^failures`, capped at `max_delay`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First retry delay.
    pub min_delay: Duration,
    /// Largest retry delay.
    pub max_delay: Duration,
}

#[derive(Debug)]
struct State<K> {
    ready: VecDeque<K>,
    queued: HashSet<K>,
    processing: HashSet<K>,
    dirty: HashSet<K>,
    delayed: BinaryHeap<Reverse<(Instant, u64, K)>>,
    seq: u64,
    failures: HashMap<K, u32>,
    closed: bool,
}

/// A deduplicating, delaying work queue.
#[derive(Debug)]
pub struct Queue<K> {
    state: Mutex<State<K>>,
    notify: Notify,
    backoff: Backoff,
}

impl<K: Clone + Eq + Hash + Ord> Queue<K> {
    /// An empty queue.
    pub fn new(backoff: Backoff) -> Self {
        Self {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                queued: HashSet::new(),
                processing: HashSet::new(),
                dirty: HashSet::new(),
                delayed: BinaryHeap::new(),
                seq: 0,
                failures: HashMap::new(),
                closed: false,
            }),
            notify: Notify::new(),
            backoff,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `key` now. A key already waiting is not added twice; a key being reconciled is
    /// run again once that reconcile ends.
    pub fn add(&self, key: K) {
        let mut s = self.lock();
        if s.closed {
            return;
        }
        if s.processing.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        if s.queued.insert(key.clone()) {
            s.ready.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Adds `key` after `delay`.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let mut s = self.lock();
        if s.closed {
            return;
        }
        s.seq += 1;
        let seq = s.seq;
        s.delayed.push(Reverse((Instant::now() + delay, seq, key)));
        drop(s);
        self.notify.notify_one();
    }

    /// Records a failure of `key` and re-adds it after its backoff; returns the delay.
    pub fn retry(&self, key: K) -> Duration {
        let delay = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            let exp = (*n).min(30);
            *n += 1;
            let d = self.backoff.min_delay.saturating_mul(1u32 << exp.min(20));
            d.min(self.backoff.max_delay)
        };
        self.add_after(key, delay);
        delay
    }

    /// Forgets the failures of `key` (after a success).
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// Marks the reconcile of `key` finished; re-adds it when it changed meanwhile.
    pub fn done(&self, key: &K) {
        let again = {
            let mut s = self.lock();
            s.processing.remove(key);
            s.dirty.remove(key)
        };
        if again {
            self.add(key.clone());
        }
    }

    /// Waits for the next key to reconcile; `None` once the queue is closed and empty.
    pub async fn next(&self) -> Option<K> {
        loop {
            let wake_at = {
                let mut s = self.lock();
                let now = Instant::now();
                while s.delayed.peek().is_some_and(|Reverse((at, _, _))| *at <= now) {
                    let Reverse((_, _, key)) = s.delayed.pop().expect("peeked");
                    if s.processing.contains(&key) {
                        s.dirty.insert(key);
                    } else if s.queued.insert(key.clone()) {
                        s.ready.push_back(key);
                    }
                }
                if let Some(key) = s.ready.pop_front() {
                    s.queued.remove(&key);
                    s.processing.insert(key.clone());
                    return Some(key);
                }
                if s.closed {
                    return None;
                }
                s.delayed.peek().map(|Reverse((at, _, _))| *at)
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        _ = self.notify.notified() => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => self.notify.notified().await,
            }
        }
    }

    /// Stops handing out keys: waiting ones are dropped, `next` returns `None`.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.ready.clear();
        s.queued.clear();
        s.delayed.clear();
        drop(s);
        self.notify.notify_waiters();
    }

    /// Keys waiting now (ready, not delayed).
    pub fn len(&self) -> usize {
        self.lock().ready.len()
    }

    /// Whether no key is ready.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys being reconciled.
    pub fn in_flight(&self) -> usize {
        self.lock().processing.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> Queue<&'static str> {
        Queue::new(Backoff {
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        })
    }

    #[tokio::test]
    async fn a_key_added_twice_is_reconciled_once() {
        let q = queue();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(q.next().await, Some("b"));
        assert_eq!(q.len(), 0);
    }

    #[tokio::test]
    async fn a_key_changed_while_reconciling_runs_again_afterwards() {
        let q = queue();
        q.add("a");
        let k = q.next().await.unwrap();
        q.add("a");
        assert!(q.is_empty(), "not handed out twice at once");
        q.done(&k);
        assert_eq!(q.next().await, Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_up_to_the_cap() {
        let q = queue();
        let delays: Vec<Duration> = (0..4).map(|_| q.retry("a")).collect();
        assert_eq!(delays, [10, 20, 40, 40].map(Duration::from_millis));
        q.forget(&"a");
        assert_eq!(q.retry("b"), Duration::from_millis(10));
        let started = Instant::now();
        assert_eq!(q.next().await, Some("a"));
        assert!(started.elapsed() >= Duration::from_millis(10));
    }

    #[tokio::test]
    async fn a_closed_queue_ends_its_workers() {
        let q = queue();
        q.add("a");
        q.close();
        assert_eq!(q.next().await, None);
    }
}
