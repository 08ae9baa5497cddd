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

use crate::{config::Backoff, metrics::QueueMetrics};

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
    /// When each waiting key was added, and when each key being reconciled was handed out.
    waiting_since: HashMap<K, Instant>,
    started: HashMap<K, Instant>,
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
    metrics: QueueMetrics,
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
                waiting_since: HashMap::new(),
                started: HashMap::new(),
                closed: false,
            }),
            notify: Notify::new(),
            backoff,
            share: share.max(1),
            metrics: QueueMetrics::default(),
        }
    }

    /// This queue, counting into `metrics`.
    pub(crate) fn observed(mut self, metrics: QueueMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Makes `key` wait (or, while it is being reconciled, run again afterwards); `false` when it
    /// was waiting already.
    fn enqueue(&self, s: &mut State<K>, key: K) -> bool {
        if s.processing.contains(&key) {
            return s.dirty.insert(key);
        }
        if !s.queued.insert(key.clone()) {
            return false;
        }
        s.waiting_since.insert(key.clone(), Instant::now());
        s.push_ready(key);
        true
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
        if self.enqueue(&mut s, key) {
            self.metrics.added();
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
        self.metrics.retried();
        self.add_after(key, delay);
        delay
    }

    /// Forgets the failures of `key` (after a success).
    pub(crate) fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// Marks the reconcile of `key` finished; re-adds it when it changed meanwhile.
    pub(crate) fn done(&self, key: &K) {
        {
            let mut s = self.lock();
            if let Some(at) = s.started.remove(key) {
                self.metrics.finished(at.elapsed());
            }
            if s.processing.remove(key) {
                let group = key.group();
                if let Some(n) = s.in_flight.get_mut(&group) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        s.in_flight.remove(&group);
                    }
                }
            }
            // Changed meanwhile: waits again (counted as an add when it was marked).
            if s.dirty.remove(key) && !s.closed {
                self.enqueue(&mut s, key.clone());
            }
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
                    if self.enqueue(&mut s, key) {
                        self.metrics.added();
                    }
                }
                if let Some(key) = s.pop_ready(self.share) {
                    s.queued.remove(&key);
                    if let Some(at) = s.waiting_since.remove(&key) {
                        self.metrics.handed_out(now.duration_since(at));
                    }
                    s.started.insert(key.clone(), now);
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
        s.waiting_since.clear();
        drop(s);
        self.notify.notify_waiters();
    }

    /// Sets the gauges of this queue's metrics from its state now.
    pub(crate) fn sample(&self) {
        let s = self.lock();
        let now = Instant::now();
        let running = s.started.values().map(|at| now.duration_since(*at).as_secs_f64());
        let (total, longest) = running.fold((0.0, 0.0_f64), |(t, l), d| (t + d, l.max(d)));
        self.metrics
            .sample(s.ready.values().map(VecDeque::len).sum(), total, longest);
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
    async fn the_queue_reports_adds_retries_waits_and_running_work_as_client_go_does() {
        let metrics = crate::metrics::Metrics::default();
        let q = queue().observed(metrics.workqueue("q"));
        q.add("a");
        q.add("a");
        q.add("b");
        tokio::time::advance(Duration::from_millis(5)).await;
        let a = q.next().await.unwrap();
        q.add("a");
        q.add("a");
        tokio::time::advance(Duration::from_secs(2)).await;
        q.sample();
        let text = metrics.encode();
        let series = |family: &str| format!("{family}{{controller=\"q\",name=\"q\"}}");
        for line in [
            format!("{} 3", series("workqueue_adds_total")),
            format!("{} 1", series("workqueue_depth")),
            format!("{} 1", series("workqueue_queue_duration_seconds_count")),
            format!("{} 2.0", series("workqueue_longest_running_processor_seconds")),
        ] {
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
        q.done(&a);
        q.retry("b");
        q.sample();
        let text = metrics.encode();
        for line in [
            format!("{} 1", series("workqueue_work_duration_seconds_count")),
            format!("{} 1", series("workqueue_retries_total")),
            format!("{} 0.0", series("workqueue_unfinished_work_seconds")),
            format!("{} 2", series("workqueue_depth")),
        ] {
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
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
