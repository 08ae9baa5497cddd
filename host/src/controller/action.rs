//! What a reconcile asks for next: nothing, a look after a delay, or a retry with backoff.

use std::time::Duration;

/// How soon a key is looked at again when its cache has not received its initial list.
pub(crate) const NOT_SYNCED_RETRY: Duration = Duration::from_millis(200);

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Action {
    /// Look again after this long.
    pub(crate) requeue_after: Option<Duration>,
    /// The reconcile failed in a way worth retrying with backoff.
    pub(crate) backoff: bool,
}

impl Action {
    /// Nothing more to do until something changes.
    pub(crate) fn done() -> Self {
        Self::default()
    }

    /// Look again after `d`.
    pub(crate) fn after(d: Duration) -> Self {
        Self {
            requeue_after: Some(d),
            backoff: false,
        }
    }

    /// Retry with backoff.
    pub(crate) fn retry() -> Self {
        Self {
            requeue_after: None,
            backoff: true,
        }
    }
}
