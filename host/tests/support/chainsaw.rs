//! The real Chainsaw (built by `scripts/cluster build`) over `tests/e2e/scenarios`, and the
//! controller as a separate process, as a user runs them.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use serde_json::Value;

use super::repo;

/// One scenario's outcome, from Chainsaw's JSON report.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub status: String,
    pub seconds: f64,
}

/// What a Chainsaw run reported.
#[derive(Debug)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    /// Chainsaw's own output (every operation, and the diff of each failed assertion).
    pub output: String,
    pub success: bool,
}

impl Report {
    /// Scenarios that did not pass.
    pub fn failed(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| o.status != "passed").collect()
    }

    /// One line per scenario.
    pub fn summary(&self) -> String {
        self.outcomes
            .iter()
            .map(|o| format!("{:<6} {} ({:.1}s)\n", o.status, o.name, o.seconds))
            .collect()
    }
}

fn seconds(start: &Value, end: &Value) -> f64 {
    let t = |v: &Value| {
        v.as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.timestamp_millis())
    };
    match (t(start), t(end)) {
        (Some(a), Some(b)) => (b - a) as f64 / 1000.0,
        _ => 0.0,
    }
}

/// Runs `chainsaw test` with `tests/e2e/chainsaw.yaml` over `scenarios` against `kubeconfig`.
/// `path` goes first on PATH (the kubectl scripts use), `home` is HOME (kubectl's caches), `env`
/// is added to the scripts' environment.
pub fn run(
    kubeconfig: &Path,
    scenarios: &Path,
    path: Option<&Path>,
    home: &Path,
    env: &[(&str, &str)],
) -> Report {
    let bin_dir = kroxide_cluster::bin_dir().expect("the pinned binaries build");
    let report_dir = home.join("chainsaw-report");
    std::fs::create_dir_all(&report_dir).unwrap();
    let mut search_path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(p) = path {
        let mut joined = std::ffi::OsString::from(p);
        joined.push(":");
        joined.push(&search_path);
        search_path = joined;
    }
    let out = Command::new(bin_dir.join("chainsaw"))
        .args(["test", "--no-color"])
        .arg("--config")
        .arg(repo().join("tests/e2e/chainsaw.yaml"))
        .arg("--test-dir")
        .arg(scenarios)
        .args(["--report-format", "JSON", "--report-name", "report"])
        .arg("--report-path")
        .arg(&report_dir)
        .env("PATH", search_path)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("chainsaw runs");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = std::fs::read_to_string(report_dir.join("report.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| panic!("chainsaw wrote no report:\n{output}"));
    let mut outcomes: Vec<Outcome> = report["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| Outcome {
            name: t["name"].as_str().unwrap_or_default().to_string(),
            status: t["status"].as_str().unwrap_or_default().to_string(),
            seconds: seconds(&t["startTime"], &t["endTime"]),
        })
        .collect();
    outcomes.sort_by(|a, b| a.name.cmp(&b.name));
    Report {
        outcomes,
        output,
        success: out.status.success(),
    }
}

/// Scenario directories (holding a `chainsaw-test.yaml`) under `root`.
pub fn scenarios(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if dir.join("chainsaw-test.yaml").exists() {
            out.push(dir.clone());
        }
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// `kroxide controller` as a process logging to a file; killed on drop.
#[derive(Debug)]
pub struct ControllerProcess {
    child: Child,
    pub log: PathBuf,
}

impl ControllerProcess {
    /// Starts `program args… --kubeconfig=<kubeconfig>`, logging to `log`.
    pub fn start(program: &Path, args: &[String], kubeconfig: &Path, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(program)
            .args(args)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .env("POD_NAME", "kroxide-e2e")
            .stdout(Stdio::from(file.try_clone().expect("log file")))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Self { child, log }
    }

    /// The last `n` lines of its log.
    pub fn tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Kills it with SIGKILL, as a crash or an OOM kill would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to 70 s (past the default graceful shutdown) for the exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(70);
        while self.running() {
            assert!(
                std::time::Instant::now() < deadline,
                "no exit 70 s after SIGTERM:\n{}",
                self.tail(20)
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
