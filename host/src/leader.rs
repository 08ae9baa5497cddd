//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it: the holder renews
//! every retry period; a candidate takes the Lease once its record has not changed for a lease
//! duration (by the candidate's own clock, so clock skew between nodes does not matter); a
//! leader that has not renewed within the renew deadline steps down at once, before another
//! replica may take over.

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, Client, api::PostParams};
use tokio::sync::watch;

/// Name of the Lease.
pub(crate) const LEASE: &str = "kroxide-controller";

/// Election settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Lease namespace.
    pub(crate) namespace: String,
    /// This replica's identity.
    pub(crate) identity: String,
    /// How long a Lease lasts without renewal.
    pub(crate) lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops working.
    pub(crate) renew_deadline: Duration,
    /// Interval between attempts.
    pub(crate) retry_period: Duration,
}

/// Campaigns for the Lease until `stop` is set, publishing whether this replica leads. On stop,
/// a leader hands the Lease back (empty holder) so a standby takes over at once.
pub(crate) async fn campaign(
    client: Client,
    settings: Settings,
    leading: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let mut observed: Option<(String, Option<String>)> = None;
    let mut observed_at = Instant::now();
    let mut last_renew: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let result = try_once(&api, &settings, &mut observed, &mut observed_at, now).await;
        match result {
            Ok(true) => last_renew = Some(now),
            Ok(false) => last_renew = None,
            Err(e) => tracing::debug!(error = %e, "lease update failed"),
        }
        let is_leader = last_renew.is_some_and(|t| t.elapsed() < settings.renew_deadline);
        if *leading.borrow() != is_leader {
            if is_leader {
                tracing::info!(identity = %settings.identity, "became the leader");
            } else {
                tracing::warn!(identity = %settings.identity, "lost the leader lease; stopped reconciling");
            }
            leading.send_replace(is_leader);
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.retry_period) => {}
            _ = stop.changed() => {
                if *leading.borrow() {
                    release(&api, &settings).await;
                    leading.send_replace(false);
                }
                return;
            }
        }
    }
}

fn micro_now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// One round: returns whether this replica holds a renewed Lease.
async fn try_once(
    api: &Api<Lease>,
    s: &Settings,
    observed: &mut Option<(String, Option<String>)>,
    observed_at: &mut Instant,
    now: Instant,
) -> Result<bool, kube::Error> {
    let seconds = i32::try_from(s.lease_duration.as_secs().max(1)).unwrap_or(15);
    let Some(mut lease) = api.get_opt(LEASE).await? else {
        let fresh = Lease {
            metadata: ObjectMeta {
                name: Some(LEASE.into()),
                namespace: Some(s.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(s.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(micro_now()),
                renew_time: Some(micro_now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        api.create(&PostParams::default(), &fresh).await?;
        return Ok(true);
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let record = (holder.clone(), spec.renew_time.as_ref().map(|t| t.0.to_string()));
    if observed.as_ref() != Some(&record) {
        *observed = Some(record);
        *observed_at = now;
    }
    let duration =
        Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(seconds)).unwrap_or(15));
    let mine = holder == s.identity;
    let free = holder.is_empty() || now.duration_since(*observed_at) > duration;
    if !mine && !free {
        return Ok(false);
    }
    let mut next = spec.clone();
    next.holder_identity = Some(s.identity.clone());
    next.lease_duration_seconds = Some(seconds);
    next.renew_time = Some(micro_now());
    if !mine {
        next.acquire_time = Some(micro_now());
        next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    lease.spec = Some(next);
    // A replace carries the resourceVersion read above: if another replica wrote meanwhile, 409.
    api.replace(LEASE, &PostParams::default(), &lease).await?;
    Ok(true)
}

async fn release(api: &Api<Lease>, s: &Settings) {
    if let Ok(Some(mut lease)) = api.get_opt(LEASE).await
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(s.identity.as_str())
    {
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        let _ = api.replace(LEASE, &PostParams::default(), &lease).await;
    }
}
