//! The API client: built from the kubeconfig or the cluster, identified as kroxide, behind a
//! client-side token bucket.

use std::time::Duration;

use kube::Client;

use super::error::Error;
use crate::config::ControllerConfig;

/// A token bucket: `rate` requests per second with bursts of `burst`.
#[derive(Debug)]
pub(crate) struct Limiter {
    state: tokio::sync::Mutex<(f64, tokio::time::Instant)>,
    rate: f64,
    burst: f64,
}

impl Limiter {
    /// A full bucket.
    pub(crate) fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            state: tokio::sync::Mutex::new((burst, tokio::time::Instant::now())),
            rate,
            burst,
        }
    }

    /// Waits for a token.
    pub(crate) async fn acquire(&self) {
        loop {
            let wait = {
                let mut s = self.state.lock().await;
                let now = tokio::time::Instant::now();
                s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.rate).min(self.burst);
                s.1 = now;
                if s.0 >= 1.0 {
                    s.0 -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - s.0) / self.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// The API client for `config`, identifying itself as kroxide.
///
/// # Errors
/// [`Error::Connect`] when no kubeconfig or in-cluster configuration works.
pub async fn client(config: &ControllerConfig) -> Result<Client, Error> {
    let mut kc = match &config.kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::Connect(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Connect(format!("{}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| Error::Connect(e.to_string()))?,
    };
    if let Ok(v) = config.user_agent.parse() {
        kc.headers.push((http::header::USER_AGENT, v));
    }
    Client::try_from(kc).map_err(|e| Error::Connect(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_limiter_allows_a_burst_then_the_rate() {
        let l = Limiter::new(10.0, 3);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            l.acquire().await;
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(190) && took < Duration::from_millis(250),
            "{took:?}"
        );
    }
}
