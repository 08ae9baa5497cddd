//! The API client: built from the kubeconfig or the cluster, identified as kroxide, behind a
//! client-side token bucket, every request counted for `/metrics`.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use kube::{Client, client::ClientBuilder};

use super::error::Error;
use crate::{config::ControllerConfig, metrics::Metrics};

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

/// The API client for `config`, identifying itself as kroxide, counting each request's answer
/// into `metrics` (`rest_client_requests_total{code,host,method}`, as client-go does).
///
/// # Errors
/// [`Error::Connect`] when no kubeconfig or in-cluster configuration works.
pub async fn client(config: &ControllerConfig, metrics: &Arc<Metrics>) -> Result<Client, Error> {
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
    let counting = CountRequests {
        metrics: metrics.clone(),
        host: kc
            .cluster_url
            .authority()
            .map_or_else(String::new, ToString::to_string)
            .into(),
    };
    Ok(ClientBuilder::try_from(kc)
        .map_err(|e| Error::Connect(e.to_string()))?
        .with_layer(&counting)
        .build())
}

/// A layer counting each request by the status code of its answer (`<error>` when none came),
/// its method and the server's host.
#[derive(Debug, Clone)]
struct CountRequests {
    metrics: Arc<Metrics>,
    host: Arc<str>,
}

impl<S> tower::Layer<S> for CountRequests {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            counting: self.clone(),
        }
    }
}

/// A service whose requests [`CountRequests`] counts.
#[derive(Debug, Clone)]
struct Counted<S> {
    inner: S,
    counting: CountRequests,
}

impl<S, Req, Res> tower::Service<http::Request<Req>> for Counted<S>
where
    S: tower::Service<http::Request<Req>, Response = http::Response<Res>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    Res: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Req>) -> Self::Future {
        let method = request.method().clone();
        let counting = self.counting.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            let code = answer
                .as_ref()
                .map_or_else(|_| "<error>".to_string(), |r| r.status().as_u16().to_string());
            counting
                .metrics
                .rest_request(&code, method.as_str(), &counting.host);
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_request_is_counted_by_its_answers_code_method_and_host() {
        let metrics = Arc::new(Metrics::default());
        let counting = CountRequests {
            metrics: metrics.clone(),
            host: "127.0.0.1:6443".into(),
        };
        let mut ok = tower::Layer::layer(
            &counting,
            tower::service_fn(|_: http::Request<()>| async {
                let mut r = http::Response::new(());
                *r.status_mut() = http::StatusCode::NOT_FOUND;
                Ok::<_, std::io::Error>(r)
            }),
        );
        let mut broken = tower::Layer::layer(
            &counting,
            tower::service_fn(|_: http::Request<()>| async {
                Err::<http::Response<()>, _>(std::io::Error::other("refused"))
            }),
        );
        let get = || http::Request::get("/api/v1/namespaces").body(()).unwrap();
        tower::Service::call(&mut ok, get()).await.unwrap();
        tower::Service::call(&mut ok, get()).await.unwrap();
        tower::Service::call(&mut broken, get()).await.unwrap_err();
        let text = metrics.encode();
        for line in [
            "rest_client_requests_total{code=\"404\",host=\"127.0.0.1:6443\",method=\"GET\"} 2",
            "rest_client_requests_total{code=\"<error>\",host=\"127.0.0.1:6443\",method=\"GET\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

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
