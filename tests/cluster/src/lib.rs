//! The real Kubernetes control plane of the tests, driven from Rust through `scripts/cluster`.
//!
//! [`Cluster::start`] runs `scripts/cluster up` in a fresh directory (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler and a KWOK node, all on 127.0.0.1) and
//! [`Cluster::stop`] (or dropping it) runs `scripts/cluster down`, which stops exactly those
//! processes. The cluster is also tied to the test process: if it dies without dropping the
//! handle, the cluster goes down within a second. [`Cluster::requests`] reads the requests clients
//! made from kube-apiserver's audit log, so request budgets are checked without a counter of ours.

use std::{
    io::{BufRead, BufReader, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::Value;

/// Why the control plane could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `scripts/cluster` could not be run.
    #[error("cannot run {script}: {source}")]
    Spawn {
        /// The script.
        script: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `scripts/cluster <command>` exited with an error.
    #[error("scripts/cluster {command} failed: {stderr}")]
    Script {
        /// `up` or `down`.
        command: &'static str,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The audit log could not be read.
    #[error("reading the audit log {path}: {source}")]
    Audit {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// One request, as kube-apiserver's audit log records it (level `Metadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// API group (empty for the core group).
    pub group: String,
    /// Plural resource (empty for non-resource paths).
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Namespace.
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// The `fieldManager` query parameter, if any.
    pub field_manager: String,
    /// The authenticated user.
    pub user: String,
    /// `User-Agent`.
    pub user_agent: String,
    /// HTTP status code of the reply.
    pub code: u16,
}

impl Request {
    /// Whether this request changes state.
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }

    /// `resource` or `resource/subresource`.
    pub fn resource_path(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// Parses one audit log line; `None` for lines that are not a completed request.
    pub fn from_audit_line(line: &str) -> Option<Self> {
        let event: Value = serde_json::from_str(line).ok()?;
        if event["stage"] != "ResponseComplete" && event["stage"] != "Panic" {
            return None;
        }
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let object = &event["objectRef"];
        let uri = event["requestURI"].as_str().unwrap_or_default();
        let field_manager = uri
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("fieldManager="))
            .map(percent_decode)
            .unwrap_or_default();
        Some(Self {
            verb: s(&event["verb"]),
            group: s(&object["apiGroup"]),
            resource: s(&object["resource"]),
            subresource: s(&object["subresource"]),
            namespace: s(&object["namespace"]),
            name: s(&object["name"]),
            field_manager,
            user: s(&event["user"]["username"]),
            user_agent: s(&event["userAgent"]),
            code: event["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
        })
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| Some(hex(bytes[i + 1])? << 4 | hex(bytes[i + 2])?))
            .flatten();
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Counts by (verb, resource[/subresource], field manager), one row each, as a table.
pub fn table<'a>(requests: impl IntoIterator<Item = &'a Request>) -> String {
    let mut rows = std::collections::BTreeMap::<(String, String, String), usize>::new();
    for r in requests {
        *rows
            .entry((r.verb.clone(), r.resource_path(), r.field_manager.clone()))
            .or_default() += 1;
    }
    let mut out = format!(
        "{:<18} {:<40} {:<28} {:>5}\n",
        "VERB", "RESOURCE", "FIELD MANAGER", "COUNT"
    );
    for ((verb, resource, manager), n) in rows {
        out.push_str(&format!("{verb:<18} {resource:<40} {manager:<28} {n:>5}\n"));
    }
    out
}

/// A running control plane; stopped on drop.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    kubeconfig: PathBuf,
    bin_dir: PathBuf,
    /// Where [`Cluster::requests`] starts reading the audit log.
    mark: Mutex<u64>,
    stopped: bool,
}

/// The repository root (this crate lives in `tests/cluster`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/cluster is two levels below the repository root")
        .to_path_buf()
}

fn script() -> PathBuf {
    repo().join("scripts/cluster")
}

fn run(command: &'static str, args: &[&str]) -> Result<String, Error> {
    let out = Command::new(script())
        .arg(command)
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            script: script(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Script {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The directory of the pinned binaries (`kubectl`, `chainsaw`, `kube-apiserver`, …), built by
/// `scripts/cluster build` on first use (minutes; seconds once built).
///
/// # Errors
/// When the build fails.
pub fn bin_dir() -> Result<PathBuf, Error> {
    Ok(PathBuf::from(
        run("build", &[])?.lines().last().unwrap_or_default().trim(),
    ))
}

impl Cluster {
    /// Builds the binaries if needed (minutes, once), starts a control plane in a new directory
    /// under the system temp dir, and waits until it serves with a Ready node.
    ///
    /// A start that fails is tried once more (the failed one stopped what it started).
    ///
    /// # Errors
    /// When `scripts/cluster up` fails twice; its stderr names the component and its log.
    pub fn start() -> Result<Self, Error> {
        // A start that fails stops what it started; one more try covers the races a busy
        // machine loses (a component's port taken between its choice and its bind).
        match Self::start_once() {
            Err(e @ Error::Script { .. }) => {
                eprintln!("real control plane did not start, trying once more: {e}");
                Self::start_once()
            }
            r => r,
        }
    }

    fn start_once() -> Result<Self, Error> {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("kroxide-cluster-{}-{n}", std::process::id()));
        let dir_s = dir.display().to_string();
        let pid = std::process::id().to_string();
        let started = Instant::now();
        let out = run("up", &["--dir", &dir_s, "--watch-pid", &pid])?;
        let kubeconfig = PathBuf::from(out.lines().last().unwrap_or_default().trim());
        let bin_dir = bin_dir()?;
        eprintln!(
            "real control plane up in {:.1}s ({})",
            started.elapsed().as_secs_f64(),
            dir.display()
        );
        Ok(Self {
            dir,
            kubeconfig,
            bin_dir,
            mark: Mutex::new(0),
            stopped: false,
        })
    }

    /// The admin kubeconfig (client certificate in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The directory of the pinned binaries: `kubectl`, `chainsaw`, `kube-apiserver`, ….
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The kubectl of the same release as the server.
    pub fn kubectl(&self) -> PathBuf {
        self.bin_dir.join("kubectl")
    }

    /// The directory holding the cluster's state, logs and audit log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The processes `scripts/cluster up` started, as (component, pid).
    pub fn processes(&self) -> Vec<(String, u32)> {
        self.named_numbers("pids")
    }

    /// The ports the components listen on (all on 127.0.0.1), as (component, port).
    pub fn ports(&self) -> Vec<(String, u16)> {
        self.named_numbers("ports")
    }

    fn named_numbers<T: std::str::FromStr>(&self, file: &str) -> Vec<(String, T)> {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (name, n) = l.split_once(' ')?;
                Some((name.to_string(), n.trim().parse().ok()?))
            })
            .collect()
    }

    fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// Forgets the requests made so far: [`Cluster::requests`] starts after this point.
    ///
    /// # Errors
    /// When the audit log cannot be read.
    pub fn reset_requests(&self) -> Result<(), Error> {
        let len = std::fs::metadata(self.audit_log())
            .map(|m| m.len())
            .map_err(|source| Error::Audit {
                path: self.audit_log(),
                source,
            })?;
        *self.mark.lock().unwrap_or_else(|e| e.into_inner()) = len;
        Ok(())
    }

    /// Every request completed since the start (or the last [`Cluster::reset_requests`]), in the
    /// order the audit log has them. Requests of the control plane's own components are not
    /// logged (tests/cluster/audit-policy.yaml).
    ///
    /// # Errors
    /// When the audit log cannot be read.
    pub fn requests(&self) -> Result<Vec<Request>, Error> {
        let path = self.audit_log();
        let audit = |source| Error::Audit {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::File::open(&path).map_err(audit)?;
        let mark = *self.mark.lock().unwrap_or_else(|e| e.into_inner());
        file.seek(SeekFrom::Start(mark)).map_err(audit)?;
        let mut out = Vec::new();
        for line in BufReader::new(file).lines() {
            let line = line.map_err(audit)?;
            out.extend(Request::from_audit_line(&line));
        }
        Ok(out)
    }

    /// Waits until the audit log has not grown for `quiet` (requests in flight are logged once
    /// they complete), at most `timeout`.
    pub fn settle(&self, quiet: Duration, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let len = || std::fs::metadata(self.audit_log()).map(|m| m.len()).unwrap_or(0);
        let mut last = len();
        let mut since = Instant::now();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            let now = len();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return;
            }
        }
    }

    /// Stops every process `start` started and removes the directory.
    ///
    /// # Errors
    /// When `scripts/cluster down` fails.
    pub fn stop(mut self) -> Result<(), Error> {
        self.stopped = true;
        run("down", &["--dir", &self.dir.display().to_string()]).map(|_| ())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = run("down", &["--dir", &self.dir.display().to_string()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_line_becomes_a_request_with_its_field_manager() {
        let line = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/apps/configmaps/a?fieldManager=kro.run%2Fapplyset&force=true","verb":"patch","user":{"username":"system:serviceaccount:kroxide-system:kroxide"},"userAgent":"kroxide/0.1.0","objectRef":{"resource":"configmaps","namespace":"apps","name":"a","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200}}"#;
        let r = Request::from_audit_line(line).unwrap();
        assert_eq!(r.verb, "patch");
        assert_eq!(r.group, "");
        assert_eq!(r.resource_path(), "configmaps");
        assert_eq!(r.namespace, "apps");
        assert_eq!(r.field_manager, "kro.run/applyset");
        assert_eq!(r.user, "system:serviceaccount:kroxide-system:kroxide");
        assert_eq!(r.code, 200);
        assert!(r.is_write());
    }

    #[test]
    fn lines_of_other_stages_and_garbage_are_skipped() {
        assert!(Request::from_audit_line(r#"{"stage":"RequestReceived","verb":"get"}"#).is_none());
        assert!(Request::from_audit_line("not json").is_none());
    }

    #[test]
    fn a_subresource_shows_in_the_resource_path() {
        let line = r#"{"stage":"ResponseComplete","verb":"patch","objectRef":{"resource":"webapps","subresource":"status","apiGroup":"kroxide.dev"},"responseStatus":{"code":200}}"#;
        let r = Request::from_audit_line(line).unwrap();
        assert_eq!(r.resource_path(), "webapps/status");
        assert_eq!(r.group, "kroxide.dev");
    }
}
