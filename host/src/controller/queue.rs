//! The work queue every reconcile goes through: one entry per key however often it is added,
//! a key re-run after its current reconcile when it changed meanwhile, delayed re-adds,
//! exponential backoff for keys that keep failing, and fairness between groups of keys (the
//! instances of one graph): ready groups take turns, and no group holds more than its share of
//! the workers, so one slow graph cannot starve the others.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, HashSet, VecDeque},
    hash::Hash,
    sync::Mutex,
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use crate::config::Backoff;

/// A queue key, and the group it shares workers with.
pub(crate) trait Key: Clone + Eq + Hash + Ord {
    /// What keys are grouped by.
    type Group: Clone + Eq + Hash + std::fmt::Debug;
    /// This key's group.
    fn group(&self) -> Self::Group;
}

impl Key for String {
    type Group = ();
    fn group(&self) {}
}

impl Key for &'static str {
    type Group = ();
    fn group(&self) {}
}

#[derive(Debug)]
struct State<K: Key> {
    /// Ready keys per group, and the groups that have some, in turn order.
    ready: HashMap<K::Group, VecDeque<K>>,
    turns: VecDeque<K::Group>,
    queued: HashSet<K>,
    processing: HashSet<K>,
    in_flight: HashMap<K::Group, usize>,
    dirty: HashSet<K>,
    delayed: BinaryHeap<Reverse<(Instant, u64, K)>>,
    /// Per delayed key, when it is due: one pending re-add per key, the earliest (heap entries
    /// that no longer match are stale and skipped).
    due: HashMap<K, Instant>,
    seq: u64,
    failures: HashMap<K, u32>,
    closed: bool,
}

impl<K: Key> State<K> {
    fn push_ready(&mut self, key: K) {
        let group = key.group();
        let keys = self.ready.entry(group.clone()).or_default();
        if keys.is_empty() {
            self.turns.push_back(group);
        }
        keys.push_back(key);
    }

    /// The next key of the first group in turn with a free share of workers; that group's turn
    /// moves to the back.
    fn pop_ready(&mut self, share: usize) -> Option<K> {
        for _ in 0..self.turns.len() {
            let group = self.turns.pop_front()?;
            if self.in_flight.get(&group).copied().unwrap_or(0) >= share {
                self.turns.push_back(group);
                continue;
            }
            let keys = self.ready.get_mut(&group)?;
            let key = keys.pop_front();
            if keys.is_empty() {
                self.ready.remove(&group);
            } else {
                self.turns.push_back(group);
            }
            return key;
        }
        None
    }
}

/// A deduplicating, delaying, fair work queue.
#[derive(Debug)]
pub(crate) struct Queue<K: Key> {
    state: Mutex<State<K>>,
    notify: Notify,
    backoff: Backoff,
    /// Most keys of one group handed out at once.
    share: usize,
}

impl<K: Key> Queue<K> {
    /// An empty queue; every group may hold every worker.
    pub(crate) fn new(backoff: Backoff) -> Self {
        Self::with_share(backoff, usize::MAX)
    }

    /// An empty queue whose groups each get at most `share` keys at once.
    pub(crate) fn with_share(backoff: Backoff, share: usize) -> Self {
        Self {
            state: Mutex::new(State {
                ready: HashMap::new(),
                turns: VecDeque::new(),
                queued: HashSet::new(),
                processing: HashSet::new(),
                in_flight: HashMap::new(),
                dirty: HashSet::new(),
                delayed: BinaryHeap::new(),
                due: HashMap::new(),
                seq: 0,
                failures: HashMap::new(),
                closed: false,
            }),
            notify: Notify::new(),
            backoff,
            share: share.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `key` now. A key already waiting is not added twice; a key being reconciled is
    /// run again once that reconcile ends.
    pub(crate) fn add(&self, key: K) {
        let mut s = self.lock();
        if s.closed {
            return;
        }
        if s.processing.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        if s.queued.insert(key.clone()) {
            s.push_ready(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Adds `key` after `delay`. A key already due earlier keeps its time: however often a key
    /// is re-added, it has one pending re-add, so periodic re-checks do not multiply.
    pub(crate) fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let mut s = self.lock();
        if s.closed {
            return;
        }
        let at = Instant::now() + delay;
        if s.due.get(&key).is_some_and(|due| *due <= at) {
            return;
        }
        s.due.insert(key.clone(), at);
        s.seq += 1;
        let seq = s.seq;
        s.delayed.push(Reverse((at, seq, key)));
        drop(s);
        self.notify.notify_one();
    }

    /// Records a failure of `key` and re-adds it after its backoff; returns the delay.
    pub(crate) fn retry(&self, key: K) -> Duration {
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
    pub(crate) fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// Marks the reconcile of `key` finished; re-adds it when it changed meanwhile.
    pub(crate) fn done(&self, key: &K) {
        let again = {
            let mut s = self.lock();
            if s.processing.remove(key) {
                let group = key.group();
                if let Some(n) = s.in_flight.get_mut(&group) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        s.in_flight.remove(&group);
                    }
                }
            }
            s.dirty.remove(key)
        };
        if again {
            self.add(key.clone());
        }
        // A group at its share may have a key for the worker that just freed up.
        self.notify.notify_one();
    }

    /// Waits for the next key to reconcile; `None` once the queue is closed and empty.
    pub(crate) async fn next(&self) -> Option<K> {
        loop {
            // Register for wake-ups before looking, so a notify in between is not lost.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake_at = {
                let mut s = self.lock();
                let now = Instant::now();
                while s.delayed.peek().is_some_and(|Reverse((at, _, _))| *at <= now) {
                    let Reverse((at, _, key)) = s.delayed.pop().expect("peeked");
                    if s.due.get(&key) != Some(&at) {
                        // Superseded by an earlier time, already served.
                        continue;
                    }
                    s.due.remove(&key);
                    if s.processing.contains(&key) {
                        s.dirty.insert(key);
                    } else if s.queued.insert(key.clone()) {
                        s.push_ready(key);
                    }
                }
                if let Some(key) = s.pop_ready(self.share) {
                    s.queued.remove(&key);
                    s.processing.insert(key.clone());
                    *s.in_flight.entry(key.group()).or_insert(0) += 1;
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
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Stops handing out keys: waiting ones are dropped, `next` returns `None`.
    pub(crate) fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.ready.clear();
        s.turns.clear();
        s.queued.clear();
        s.delayed.clear();
        s.due.clear();
        drop(s);
        self.notify.notify_waiters();
    }

    /// Keys waiting now (ready, not delayed).
    pub(crate) fn len(&self) -> usize {
        self.lock().ready.values().map(VecDeque::len).sum()
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
        assert_eq!(q.len(), 0, "not handed out twice at once");
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

    #[tokio::test(start_paused = true)]
    async fn a_key_re_added_often_has_one_pending_re_add_the_earliest() {
        let q = queue();
        q.add_after("a", Duration::from_millis(50));
        q.add_after("a", Duration::from_millis(10));
        q.add_after("a", Duration::from_millis(30));
        let started = Instant::now();
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(started.elapsed(), Duration::from_millis(10));
        q.done(&"a");
        // Nothing else is pending: the 30 and 50 ms re-adds were folded into the first.
        let again = tokio::time::timeout(Duration::from_secs(1), q.next()).await;
        assert!(again.is_err(), "a second run: {again:?}");
    }

    /// Keys grouped by their first letter.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
    struct Grouped(&'static str);

    impl Key for Grouped {
        type Group = char;
        fn group(&self) -> char {
            self.0.chars().next().unwrap_or(' ')
        }
    }

    fn fair(share: usize) -> Queue<Grouped> {
        Queue::with_share(
            Backoff {
                min_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(40),
            },
            share,
        )
    }

    #[tokio::test]
    async fn groups_take_turns_so_a_late_group_is_not_behind_a_long_one() {
        let q = fair(usize::MAX);
        for k in ["a1", "a2", "a3", "a4", "b1"] {
            q.add(Grouped(k));
        }
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(q.next().await.unwrap().0);
        }
        assert_eq!(got, ["a1", "b1", "a2", "a3", "a4"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_at_its_share_waits_while_others_run() {
        let q = fair(2);
        for k in ["a1", "a2", "a3", "b1"] {
            q.add(Grouped(k));
        }
        let first = q.next().await.unwrap();
        let second = q.next().await.unwrap();
        let third = q.next().await.unwrap();
        assert_eq!([first.0, second.0, third.0], ["a1", "b1", "a2"]);
        // Group a holds its share: a3 waits until one of a's keys is done.
        let waiting = tokio::time::timeout(Duration::from_secs(1), q.next()).await;
        assert!(waiting.is_err(), "a3 handed out beyond its group's share");
        q.done(&first);
        assert_eq!(q.next().await.unwrap().0, "a3");
    }

    #[tokio::test]
    async fn a_closed_queue_ends_its_workers() {
        let q = queue();
        q.add("a");
        q.close();
        assert_eq!(q.next().await, None);
    }
}
