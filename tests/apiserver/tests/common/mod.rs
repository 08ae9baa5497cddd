//! Shared helpers: a server per test (the embedded one, or the real control plane of
//! scripts/cluster), a kube-rs client for it, kubectl with a throw-away HOME, and polling with a
//! deadline.
#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use kroxide_apiserver::{ApiServer, Config};

/// A server with fast workload simulation and frequent bookmarks.
pub async fn server() -> ApiServer {
    ApiServer::start(Config {
        workload_delay: Duration::from_millis(100),
        bookmark_interval: Duration::from_millis(300),
        ..Config::default()
    })
    .await
    .expect("the API server starts")
}

/// Which server a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// This crate's server, in process.
    Embedded,
    /// The real control plane (Kubernetes' own components, a KWOK node).
    Real,
}

/// A running server of either kind.
pub enum Target {
    Embedded(ApiServer),
    Real(kroxide_cluster::Cluster),
}

impl Target {
    /// Starts `server` (the embedded one as [`server`] does).
    pub async fn start(server: Server) -> Self {
        match server {
            Server::Embedded => Target::Embedded(self::server().await),
            Server::Real => Target::Real(
                tokio::task::spawn_blocking(kroxide_cluster::Cluster::start)
                    .await
                    .unwrap()
                    .expect("the real control plane starts"),
            ),
        }
    }

    /// A kube-rs client.
    pub async fn client(&self) -> kube::Client {
        match self {
            Target::Embedded(s) => client(s),
            Target::Real(c) => {
                let config = kube::Config::from_custom_kubeconfig(
                    kube::config::Kubeconfig::read_from(c.kubeconfig()).unwrap(),
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
                .unwrap();
                kube::Client::try_from(config).unwrap()
            }
        }
    }

    /// The embedded server, for steps only it can do (faults, compaction, its request log).
    pub fn embedded(&self) -> &ApiServer {
        match self {
            Target::Embedded(s) => s,
            Target::Real(_) => panic!("this step needs the embedded server"),
        }
    }

    /// Stops it.
    pub async fn shutdown(self) {
        match self {
            Target::Embedded(s) => s.shutdown().await,
            Target::Real(c) => tokio::task::spawn_blocking(move || c.stop().unwrap())
                .await
                .unwrap(),
        }
    }
}

/// Runs the async test `$name(server)` once per server, as `$name::embedded_api_server` and
/// `$name::real_control_plane`.
#[macro_export]
macro_rules! on_both_servers {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn embedded_api_server() {
                super::$name($crate::common::Server::Embedded).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn real_control_plane() {
                super::$name($crate::common::Server::Real).await
            }
        }
    )+};
}

/// A kube-rs client for `server`.
pub fn client(server: &ApiServer) -> kube::Client {
    let config = kube::Config::new(server.url().parse().expect("a valid URL"));
    kube::Client::try_from(config).expect("a client")
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T>(timeout: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!("kroxide-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The real kubectl against one server, with its own HOME (so no discovery cache is shared).
pub struct Kubectl {
    pub home: TempDir,
    pub kubeconfig: PathBuf,
    /// The kubectl binary.
    pub program: PathBuf,
}

/// A finished command.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// A kubectl still running, its stdout read line by line.
pub struct Streaming {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<String>,
    seen: String,
}

impl Streaming {
    /// Waits until a line of stdout contains `needle`; panics with what was printed after
    /// `timeout`.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line.contains(needle) {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} within {timeout:?}; printed:\n{}",
                    self.seen
                ),
            }
        }
    }

    /// Waits for kubectl to exit.
    pub fn finish(mut self) -> Run {
        use std::io::Read;
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let status = self.child.wait().expect("kubectl exits");
        Run {
            ok: status.success(),
            stdout: self.reader.join().expect("reader"),
            stderr,
        }
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Kubectl {
    pub fn new(server: &ApiServer) -> Self {
        let home = TempDir::new("kubectl");
        let kubeconfig = home.0.join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
        Self {
            home,
            kubeconfig,
            program: PathBuf::from("kubectl"),
        }
    }

    /// The kubectl for `target`: the machine's dispatcher (1.32) for the embedded server, the
    /// control plane's own release for the real one.
    pub fn for_target(target: &Target) -> Self {
        match target {
            Target::Embedded(s) => Self::new(s),
            Target::Real(c) => {
                let home = TempDir::new("kubectl");
                let kubeconfig = home.0.join("kubeconfig");
                std::fs::copy(c.kubeconfig(), &kubeconfig).unwrap();
                Self {
                    home,
                    kubeconfig,
                    program: c.kubectl(),
                }
            }
        }
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .env("HOME", &self.home.0)
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .current_dir(&self.home.0);
        c
    }

    /// Runs kubectl (blocking; call from `spawn_blocking` in async tests).
    pub fn run(&self, args: &[&str]) -> Run {
        self.command(&self.program, args)
            .output()
            .expect("kubectl runs")
            .into()
    }

    /// Starts kubectl on a thread (for `get -w` or a blocking delete); join for the result.
    pub fn spawn(&self, args: &[&str]) -> std::thread::JoinHandle<Run> {
        let mut c = self.command(&self.program, args);
        std::thread::spawn(move || c.output().expect("kubectl runs").into())
    }

    /// Starts kubectl with its stdout read as it comes, so a test can wait for a line (the
    /// first row of `get -w`, the `deleted` of a delete that then waits) instead of sleeping.
    pub fn stream(&self, args: &[&str]) -> Streaming {
        let mut child = self
            .command(&self.program, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut all = String::new();
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send(line);
            }
            all
        });
        Streaming {
            child,
            lines,
            reader,
            seen: String::new(),
        }
    }

    /// Runs kubectl with `stdin`.
    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Run {
        use std::io::Write;
        let mut child = self
            .command(&self.program, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap().into()
    }

    /// Runs kubectl and fails the test with its output unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert!(
            r.ok,
            "kubectl {} failed:\n{}{}",
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r.stdout
    }

    /// Writes a file into the HOME and returns its path.
    pub fn file(&self, name: &str, content: &[u8]) -> String {
        let p = self.home.0.join(name);
        std::fs::write(&p, content).unwrap();
        p.to_string_lossy().into_owned()
    }

    /// Runs another program (helm) with this HOME and kubeconfig.
    pub fn other(&self, program: &str, args: &[&str]) -> Run {
        self.command(program, args).output().expect("program runs").into()
    }
}
