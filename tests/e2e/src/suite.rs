//! A whole suite: one fresh API server (and, when given, one controller process logging to a
//! file), every scenario in its own namespace, concurrent ones in parallel and those marked
//! `concurrent: false` alone afterwards.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use kroxide_apiserver::{ApiServer, Config};

use crate::{
    runner::{self, Env, Failure, Passed},
    scenario::Test,
};

/// How to start the controller under test: the program and its arguments; `--kubeconfig <file>`
/// is appended.
#[derive(Debug, Clone)]
pub struct Controller {
    /// Program.
    pub program: PathBuf,
    /// Arguments before `--kubeconfig`.
    pub args: Vec<String>,
}

/// Options of a suite run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Scenarios run at the same time.
    pub parallel: usize,
    /// Default `assert` / `error` timeout.
    pub assert_timeout: Duration,
    /// The controller, if any.
    pub controller: Option<Controller>,
    /// Manifests applied (`kubectl apply -f`) before the controller starts: CRDs a Helm chart
    /// would install.
    pub setup: Vec<PathBuf>,
    /// Extra environment for `script` operations (e.g. where built plugins are).
    pub script_env: Vec<(String, String)>,
    /// How long simulated workloads take to become ready.
    pub workload_delay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            parallel: 3,
            assert_timeout: Duration::from_secs(30),
            controller: None,
            setup: Vec::new(),
            script_env: Vec::new(),
            workload_delay: Duration::from_secs(1),
        }
    }
}

/// Results of a suite.
#[derive(Debug, Default)]
pub struct Report {
    /// Scenarios that passed.
    pub passed: Vec<Passed>,
    /// Scenarios that failed.
    pub failed: Vec<Box<Failure>>,
    /// Every request the controller made (user agent `kroxide/...`), for RBAC checks.
    pub controller_requests: Vec<kroxide_apiserver::Request>,
}

impl Report {
    /// One line per scenario, then every failure in full.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for p in &self.passed {
            out.push_str(&format!("ok    {} ({:.1}s)", p.test, p.elapsed.as_secs_f64()));
            for n in &p.notes {
                out.push_str(&format!(" [{n}]"));
            }
            out.push('\n');
        }
        for f in &self.failed {
            out.push_str(&format!("FAIL  {}\n", f.test));
        }
        for f in &self.failed {
            out.push_str(&format!("\n{f}"));
        }
        out
    }
}

struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Creates one under the system temp dir.
    ///
    /// # Panics
    /// When the directory cannot be created.
    pub fn new(tag: &str) -> Self {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("kroxide-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).expect("a scratch directory");
        Self(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `scenarios` against a fresh API server.
///
/// # Panics
/// When the API server or the controller cannot be started.
pub fn run(scenarios: &[PathBuf], options: &Options) -> Report {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let server = rt
        .block_on(ApiServer::start(Config::default()))
        .expect("the API server starts");
    let scratch = Scratch::new("e2e");
    let kubeconfig = scratch.0.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).expect("kubeconfig written");
    let log = scratch.0.join("controller.log");
    for file in &options.setup {
        let out = Command::new("kubectl")
            .args(["apply", "-f"])
            .arg(file)
            .env("HOME", &scratch.0)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "setup {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _controller = options.controller.as_ref().map(|c| {
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(&c.program)
            .args(&c.args)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .stdout(Stdio::from(file.try_clone().expect("log file")))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", c.program.display()));
        Running { child }
    });
    let env = Env {
        kubeconfig: kubeconfig.clone(),
        home: scratch.0.clone(),
        assert_timeout: options.assert_timeout,
        op_timeout: Duration::from_secs(30),
        log: options.controller.as_ref().map(|_| log.clone()),
        script_env: options.script_env.clone(),
    };
    // Warm kubectl's discovery cache once, so parallel scenarios do not all fetch it.
    let _ = Command::new("kubectl")
        .args(["api-resources"])
        .env("HOME", &scratch.0)
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();

    let (serial, concurrent): (Vec<&PathBuf>, Vec<&PathBuf>) = scenarios
        .iter()
        .partition(|d| Test::load(d).is_ok_and(|t| t.spec.concurrent == Some(false)));
    let report = Arc::new(Mutex::new(Report::default()));
    let record = |r: Result<Passed, Box<Failure>>, report: &Mutex<Report>| {
        let mut rep = report.lock().unwrap_or_else(|e| e.into_inner());
        match r {
            Ok(p) => rep.passed.push(p),
            Err(f) => rep.failed.push(f),
        }
    };
    let queue = Arc::new(Mutex::new(concurrent.into_iter().cloned().collect::<Vec<_>>()));
    std::thread::scope(|s| {
        for _ in 0..options.parallel.max(1) {
            let queue = queue.clone();
            let report = report.clone();
            let env = env.clone();
            s.spawn(move || {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                    let Some(dir) = next else { break };
                    record(runner::run(&dir, &env), &report);
                }
            });
        }
    });
    for dir in serial {
        record(runner::run(dir, &env), &report);
    }
    let controller_requests: Vec<kroxide_apiserver::Request> = server
        .counters()
        .snapshot()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("kroxide/"))
        .collect();
    rt.block_on(server.shutdown());
    let mut report = Arc::try_unwrap(report)
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .unwrap_or_default();
    report.passed.sort_by(|a, b| a.test.cmp(&b.test));
    report.controller_requests = controller_requests;
    report
}

/// Scenario directories under `root`.
pub fn discover(root: &Path) -> Vec<PathBuf> {
    runner::discover(root)
}
