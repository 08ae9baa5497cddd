//! Shared helpers: a server per test, a kube-rs client for it, kubectl with a throw-away HOME,
//! and polling with a deadline.
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
}

/// A finished command.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
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
        Self { home, kubeconfig }
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
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
        self.command("kubectl", args)
            .output()
            .expect("kubectl runs")
            .into()
    }

    /// Starts kubectl on a thread (for `get -w` or a blocking delete); join for the result.
    pub fn spawn(&self, args: &[&str]) -> std::thread::JoinHandle<Run> {
        let mut c = self.command("kubectl", args);
        std::thread::spawn(move || c.output().expect("kubectl runs").into())
    }

    /// Runs kubectl with `stdin`.
    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Run {
        use std::io::Write;
        let mut child = self
            .command("kubectl", args)
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
