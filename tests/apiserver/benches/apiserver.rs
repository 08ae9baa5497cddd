//! Throughput of the test API server on this machine: GETs, server-side applies, and watch fan-out
//! to 100 watchers. Uses a minimal keep-alive HTTP/1.1 client so the client costs little.
//! Prints a Markdown table; run with `cargo bench -p kroxide-apiserver`.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use kroxide_apiserver::{ApiServer, Config};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        Self {
            reader: BufReader::new(s),
        }
    }

    async fn request(&mut self, method: &str, path: &str, content_type: &str, body: &[u8]) -> u16 {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: bench\r\nuser-agent: bench/1\r\naccept: application/json\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let s = self.reader.get_mut();
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).await.unwrap();
        let code: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut buf = vec![0; length];
        self.reader.read_exact(&mut buf).await.unwrap();
        code
    }
}

async fn load(
    addr: SocketAddr,
    connections: usize,
    dur: Duration,
    make: impl Fn(u64) -> (String, String, Vec<u8>) + Send + Sync + 'static,
) -> f64 {
    let make = Arc::new(make);
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let make = make.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            while start.elapsed() < dur {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let (method, path, body) = make(i);
                let ct = if method == "PATCH" {
                    "application/apply-patch+yaml"
                } else {
                    "application/json"
                };
                let code = c.request(&method, &path, ct, &body).await;
                assert!(code < 300, "{method} {path}: {code}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    counter.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn deployment(name: &str, image: &str) -> String {
    format!(
        r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"{name}","labels":{{"app":"bench"}}}},"spec":{{"replicas":1,"selector":{{"matchLabels":{{"app":"bench"}}}},"template":{{"metadata":{{"labels":{{"app":"bench"}}}},"spec":{{"containers":[{{"name":"c","image":"{image}"}}]}}}}}}}}"#
    )
}

/// Microseconds per server-side apply of a Deployment spec change (8 connections, 100
/// Deployments, workload simulation on: each change starts a simulated rollout) while the
/// store holds each of `sizes` other Deployments (rolled out, with simulated status).
async fn apply_cost_by_store_size(sizes: &[usize]) -> Vec<(usize, usize, f64)> {
    let server = ApiServer::start(Config::default()).await.unwrap();
    let addr = server.addr();
    let mut setup = Conn::open(addr).await;
    let ns = br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"bulk"}}"#;
    setup
        .request("POST", "/api/v1/namespaces", "application/json", ns)
        .await;
    for i in 0..100 {
        let body = deployment(&format!("d-{i}"), "nginx:0");
        let code = setup
            .request(
                "POST",
                "/apis/apps/v1/namespaces/default/deployments",
                "application/json",
                body.as_bytes(),
            )
            .await;
        assert!(code < 300, "create d-{i}: {code}");
    }
    let mut out = Vec::new();
    let mut stored = 0;
    for &size in sizes {
        while stored < size {
            let body = deployment(&format!("bulk-{stored}"), "nginx:1");
            let code = setup
                .request(
                    "POST",
                    "/apis/apps/v1/namespaces/bulk/deployments",
                    "application/json",
                    body.as_bytes(),
                )
                .await;
            assert!(code < 300, "create bulk-{stored}: {code}");
            stored += 1;
        }
        // Let the simulated rollouts of the bulk Deployments finish (200 ms after each change).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let objects = server.names("apps/v1", "Deployment", None).len();
        let rate = load(addr, 8, Duration::from_secs(3), |i| {
            let name = format!("d-{}", i % 100);
            let body = deployment(&name, &format!("nginx:{}", i + 1));
            (
                "PATCH".into(),
                format!("/apis/apps/v1/namespaces/default/deployments/{name}?fieldManager=bench&force=true"),
                body.into_bytes(),
            )
        })
        .await;
        out.push((size, objects, 1e6 / rate));
    }
    server.shutdown().await;
    out
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let server = ApiServer::start(Config {
        simulate_workloads: false,
        ..Config::default()
    })
    .await
    .unwrap();
    let addr = server.addr();
    let mut setup = Conn::open(addr).await;
    for i in 0..100 {
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm-{i}","labels":{{"app":"bench"}}}},"data":{{"k":"v"}}}}"#
        );
        setup
            .request(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                "application/json",
                body.as_bytes(),
            )
            .await;
    }
    let secs = Duration::from_secs(3);
    let gets = load(addr, 8, secs, |i| {
        (
            "GET".into(),
            format!("/api/v1/namespaces/default/configmaps/cm-{}", i % 100),
            Vec::new(),
        )
    })
    .await;
    let applies = load(addr, 8, secs, |i| {
        let name = format!("cm-{}", i % 100);
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","labels":{{"app":"bench"}}}},"data":{{"k":"v{i}","static":"s"}}}}"#
        );
        ("PATCH".into(), format!("/api/v1/namespaces/default/configmaps/{name}?fieldManager=bench&force=true"), body.into_bytes())
    })
    .await;
    let noops = load(addr, 8, secs, |i| {
        let name = format!("cm-{}", i % 100);
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","labels":{{"app":"bench"}}}},"data":{{"k":"fixed","static":"s"}}}}"#
        );
        ("PATCH".into(), format!("/api/v1/namespaces/default/configmaps/{name}?fieldManager=steady&force=true"), body.into_bytes())
    })
    .await;

    // 100 watchers; each write must reach all of them.
    let watchers = 100;
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sent_at = Arc::new(std::sync::Mutex::new(
        std::collections::HashMap::<String, Instant>::new(),
    ));
    let rv = server.resource_version();
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let received = received.clone();
        let latencies = latencies.clone();
        let sent_at = sent_at.clone();
        tasks.push(tokio::spawn(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            let mut r = BufReader::new(s);
            let head = format!("GET /api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv} HTTP/1.1\r\nhost: b\r\n\r\n");
            r.get_mut().write_all(head.as_bytes()).await.unwrap();
            let mut line = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await.unwrap() == 0 {
                    return;
                }
                if let Some(i) = line.find("\"name\":\"w-") {
                    let name: String = line[i + 8..].chars().take_while(|c| *c != '"').collect();
                    if let Some(t) = sent_at.lock().unwrap().get(&name) {
                        latencies.lock().unwrap().push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writes = 500;
    let start = Instant::now();
    let mut writer = Conn::open(addr).await;
    for i in 0..writes {
        let name = format!("w-{i}");
        sent_at.lock().unwrap().insert(name.clone(), Instant::now());
        let body = format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}}}}"#);
        writer
            .request(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                "application/json",
                body.as_bytes(),
            )
            .await;
    }
    let want = (writes * watchers) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fanout = start.elapsed();
    let delivered = received.load(Ordering::Relaxed);
    let lat = latencies.lock().unwrap().clone();
    for t in tasks {
        t.abort();
    }
    println!("| measurement | result | target |");
    println!("|---|---|---|");
    println!("| GET of a ConfigMap (8 keep-alive connections, 3 s) | **{gets:.0} req/s** | ≥ 5,000/s |");
    println!(
        "| server-side apply that changes the object (8 connections, 100 objects) | **{applies:.0} req/s** | ≥ 2,000/s |"
    );
    println!("| server-side apply that changes nothing (no-op) | {noops:.0} req/s | |");
    println!(
        "| {watchers} watchers × {writes} creates: events delivered | {delivered} of {want} in {:.2} s ({:.0} events/s) | all |",
        fanout.as_secs_f64(),
        delivered as f64 / fanout.as_secs_f64()
    );
    println!(
        "| watch event latency, create → watcher, p50 / p99 | {:.2} / {:.2} ms | |",
        percentile(lat.clone(), 0.5),
        percentile(lat, 0.99)
    );
    server.shutdown().await;
    let by_size = apply_cost_by_store_size(&[1_000, 10_000]).await;
    for (size, objects, micros) in &by_size {
        println!(
            "| server-side apply of a Deployment change, simulation on, {size} other Deployments stored ({objects} Deployments in all) | {micros:.0} µs per write | |"
        );
    }
    if let [(_, _, small), .., (_, _, large)] = by_size.as_slice() {
        println!(
            "| per-write cost at the largest store against the smallest | {:.2}× | ≤ 1.5× |",
            large / small
        );
    }
}
