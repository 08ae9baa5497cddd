//! Runs one scenario with the real kubectl: a fresh `chainsaw-<random>` namespace, the steps in
//! order (`try`, then `catch` on failure, `finally` always), assertions polled until they hold
//! or time out, and cleanup of everything the scenario created.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    matching::{self, Bindings, Mismatch},
    scenario::{self, FileOp, ObjectRef, Operation, Test},
};

/// Where and how scenarios run.
#[derive(Debug, Clone)]
pub struct Env {
    /// kubeconfig of the API server.
    pub kubeconfig: PathBuf,
    /// A throw-away HOME for kubectl (its discovery cache lives there).
    pub home: PathBuf,
    /// Default timeout of `assert` and `error` (Chainsaw: 30 s).
    pub assert_timeout: Duration,
    /// Default timeout of `apply`, `create`, `patch`, `delete`, `script` and cleanup.
    pub op_timeout: Duration,
    /// A log to show the tail of when a scenario fails (the controller's).
    pub log: Option<PathBuf>,
    /// Extra environment for `script` operations.
    pub script_env: Vec<(String, String)>,
}

/// A failed scenario: where, what, and the controller's last words.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Test name.
    pub test: String,
    /// Step, e.g. `step 2 (instance-ready)`.
    pub step: String,
    /// Operation, e.g. `try[1] assert instance.yaml`.
    pub operation: String,
    /// What went wrong: the first mismatching path with both values, or the command's output.
    pub detail: String,
    /// Output of `catch` operations.
    pub catch: String,
    /// The last lines of [`Env::log`].
    pub log_tail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "scenario {} failed at {}, {}:",
            self.test, self.step, self.operation
        )?;
        writeln!(f, "  {}", self.detail.replace('\n', "\n  "))?;
        if !self.catch.is_empty() {
            writeln!(f, "catch:\n  {}", self.catch.trim_end().replace('\n', "\n  "))?;
        }
        if !self.log_tail.is_empty() {
            writeln!(
                f,
                "controller log (last lines):\n  {}",
                self.log_tail.trim_end().replace('\n', "\n  ")
            )?;
        }
        Ok(())
    }
}

/// A passed scenario.
#[derive(Debug, Clone)]
pub struct Passed {
    /// Test name.
    pub test: String,
    /// Notes (skipped catch operations, for instance).
    pub notes: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

struct Ctx<'a> {
    dir: &'a Path,
    env: &'a Env,
    test: &'a Test,
    namespace: String,
    bindings: Bindings,
    /// Objects created, for cleanup: (resource argument, name, namespace).
    created: Vec<(String, String, Option<String>)>,
    notes: Vec<String>,
}

/// kubectl's resource argument for apiVersion + kind: `deployment.v1.apps`, `configmap`.
pub fn resource_arg(api_version: &str, kind: &str) -> String {
    let kind = kind.to_ascii_lowercase();
    match api_version.rsplit_once('/') {
        Some((group, version)) => format!("{kind}.{version}.{group}"),
        None => kind,
    }
}

fn run_command(mut c: Command, timeout: Duration, stdin: Option<&str>) -> Output {
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = match c.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Output {
                ok: false,
                stdout: String::new(),
                stderr: format!("cannot run {c:?}: {e}"),
            };
        }
    };
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        let _ = pipe.write_all(input.as_bytes());
    }
    let mut out_pipe = child.stdout.take().expect("piped");
    let mut err_pipe = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    let stdout = out.join().unwrap_or_default();
    let mut stderr = err.join().unwrap_or_default();
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {timeout:?})"));
    }
    Output {
        ok: status.is_some_and(|s| s.success()),
        stdout,
        stderr,
    }
}

impl Ctx<'_> {
    fn kubectl(&self, args: &[&str], stdin: Option<&str>, timeout: Duration) -> Output {
        let mut c = Command::new("kubectl");
        c.args(args)
            .env("HOME", &self.env.home)
            .env("KUBECONFIG", &self.env.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .current_dir(self.dir);
        run_command(c, timeout, stdin)
    }

    fn timeout(&self, op: Option<&str>, spec: Option<&str>, default: Duration) -> Duration {
        op.or(spec).and_then(scenario::duration).unwrap_or(default)
    }

    fn documents(&self, op: &FileOp) -> Result<Vec<Value>, String> {
        let docs = match (&op.file, &op.resource) {
            (Some(file), _) => {
                let path = self.dir.join(file);
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let docs: Vec<Value> =
                    serde_saphyr::from_multiple(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                docs.into_iter().filter(|d| !d.is_null()).collect()
            }
            (None, Some(r)) => vec![r.clone()],
            (None, None) => Vec::new(),
        };
        Ok(docs)
    }

    fn describe(op: &FileOp) -> String {
        op.file.clone().unwrap_or_else(|| "(inline resource)".into())
    }

    /// The live objects a document refers to (one by name, or all of its kind in the
    /// namespace).
    fn live(&self, doc: &Value) -> Result<Vec<Value>, String> {
        let api_version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .ok_or("the document has no apiVersion")?;
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .ok_or("the document has no kind")?;
        let ns = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(&self.namespace);
        let ns = match matching::expression(ns) {
            Some(expr) => matching::evaluate(expr, &Value::Null, &self.bindings)?
                .as_str()
                .unwrap_or_default()
                .to_string(),
            None => ns.to_string(),
        };
        let res = resource_arg(api_version, kind);
        let mut args = vec!["get", res.as_str(), "-n", ns.as_str(), "-o", "json"];
        let name = doc.pointer("/metadata/name").and_then(Value::as_str);
        if let Some(n) = name {
            args.extend([n, "--ignore-not-found"]);
        }
        let out = self.kubectl(&args, None, self.env.op_timeout);
        if !out.ok {
            return Err(format!("kubectl {}: {}", args.join(" "), out.stderr.trim()));
        }
        if out.stdout.trim().is_empty() {
            return Ok(Vec::new());
        }
        let v: Value =
            serde_json::from_str(&out.stdout).map_err(|e| format!("kubectl output is not JSON: {e}"))?;
        Ok(match v.get("items") {
            Some(Value::Array(items)) if name.is_none() => items.clone(),
            _ => vec![v],
        })
    }

    /// Whether some live object matches `doc`; the closest mismatch otherwise.
    fn find_match(&self, doc: &Value) -> Result<Result<(), Option<Mismatch>>, String> {
        let live = self.live(doc)?;
        let mut best: Option<Mismatch> = None;
        for obj in &live {
            match matching::check(doc, obj, &self.bindings) {
                Ok(()) => return Ok(Ok(())),
                Err(m) => {
                    if best.as_ref().is_none_or(|b| m.path.len() > b.path.len()) {
                        best = Some(m);
                    }
                }
            }
        }
        Ok(Err(best))
    }

    fn apply_like(&mut self, verb: &str, op: &FileOp) -> Result<(), String> {
        let timeout = self.timeout(
            op.timeout.as_deref(),
            self.test.spec.timeouts.apply.as_deref(),
            self.env.op_timeout,
        );
        for mut doc in self.documents(op)? {
            matching::template(&mut doc, &self.bindings)?;
            let text = serde_json::to_string(&doc).map_err(|e| e.to_string())?;
            let ns = doc
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or(&self.namespace)
                .to_string();
            if verb == "patch" {
                let res = resource_arg(
                    doc.get("apiVersion").and_then(Value::as_str).unwrap_or("v1"),
                    doc.get("kind").and_then(Value::as_str).unwrap_or_default(),
                );
                let name = doc
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .ok_or("a patch needs metadata.name")?;
                let out = self.kubectl(
                    &["patch", &res, name, "-n", &ns, "--type=merge", "-p", &text],
                    None,
                    timeout,
                );
                if !out.ok {
                    return Err(format!("kubectl patch {res} {name}: {}", out.stderr.trim()));
                }
                continue;
            }
            let args = [verb, "-n", ns.as_str(), "-f", "-", "-o", "json"];
            let out = self.kubectl(&args, Some(&text), timeout);
            if !out.ok {
                return Err(format!("kubectl {verb}: {}", out.stderr.trim()));
            }
            let made: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
            let name = made
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let ns = made
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(String::from);
            let res = resource_arg(
                made.get("apiVersion").and_then(Value::as_str).unwrap_or("v1"),
                made.get("kind").and_then(Value::as_str).unwrap_or_default(),
            );
            let entry = (res, name, ns);
            if !self.created.contains(&entry) {
                self.created.push(entry);
            }
        }
        Ok(())
    }

    fn poll(&self, op: &FileOp, want_match: bool) -> Result<(), String> {
        let (spec, kind) = if want_match {
            (self.test.spec.timeouts.assert.as_deref(), "assert")
        } else {
            (self.test.spec.timeouts.error.as_deref(), "error")
        };
        let timeout = self.timeout(op.timeout.as_deref(), spec, self.env.assert_timeout);
        let deadline = Instant::now() + timeout;
        let docs = self.documents(op)?;
        loop {
            let mut pending = None;
            for doc in &docs {
                let found = self.find_match(doc)?;
                let done = matches!((&found, want_match), (Ok(()), true) | (Err(_), false));
                if !done {
                    pending = Some((doc.clone(), found));
                    break;
                }
            }
            let Some((doc, found)) = pending else {
                return Ok(());
            };
            if Instant::now() > deadline {
                let what = format!(
                    "{} {}",
                    doc.get("kind").and_then(Value::as_str).unwrap_or("object"),
                    doc.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("(any)")
                );
                return Err(match (found, want_match) {
                    (Err(Some(m)), true) => format!("{kind} timed out after {timeout:?}: {what}: {m}"),
                    (Err(None), true) => format!("{kind} timed out after {timeout:?}: {what}: not found"),
                    _ => format!("{kind} timed out after {timeout:?}: {what} still matches"),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn object_args(&self, r: &ObjectRef) -> (String, Option<String>, String) {
        (
            resource_arg(&r.api_version, &r.kind),
            r.name.clone(),
            r.namespace.clone().unwrap_or_else(|| self.namespace.clone()),
        )
    }

    fn execute(&mut self, op: &Operation) -> Result<String, String> {
        let spec = &self.test.spec.timeouts;
        if let Some(o) = &op.apply {
            self.apply_like("apply", o)?;
        } else if let Some(o) = &op.create {
            self.apply_like("create", o)?;
        } else if let Some(o) = &op.patch {
            self.apply_like("patch", o)?;
        } else if let Some(o) = &op.assert {
            self.poll(o, true)?;
        } else if let Some(o) = &op.error {
            self.poll(o, false)?;
        } else if let Some(d) = &op.delete {
            let timeout = self.timeout(d.timeout.as_deref(), spec.delete.as_deref(), self.env.op_timeout);
            let t = format!("--timeout={}s", timeout.as_secs().max(1));
            let out = match (&d.reference, &d.file) {
                (Some(r), _) => {
                    let (res, name, ns) = self.object_args(r);
                    let mut args = vec!["delete", res.as_str(), "-n", ns.as_str(), "--wait", t.as_str()];
                    match &name {
                        Some(n) => args.push(n),
                        None => args.push("--all"),
                    }
                    self.kubectl(&args, None, timeout + Duration::from_secs(5))
                }
                (None, Some(file)) => {
                    let mut docs = self.documents(&FileOp {
                        file: Some(file.clone()),
                        resource: None,
                        timeout: None,
                    })?;
                    for d in &mut docs {
                        matching::template(d, &self.bindings)?;
                    }
                    let text: String = docs
                        .iter()
                        .map(|d| format!("---\n{}\n", serde_json::to_string(d).unwrap_or_default()))
                        .collect();
                    self.kubectl(
                        &["delete", "-n", &self.namespace, "-f", "-", "--wait", &t],
                        Some(&text),
                        timeout + Duration::from_secs(5),
                    )
                }
                (None, None) => unreachable!("checked when loading"),
            };
            if !out.ok {
                return Err(format!("kubectl delete: {}", out.stderr.trim()));
            }
        } else if let Some(w) = &op.wait {
            let timeout = self.timeout(
                w.timeout.as_deref(),
                spec.assert.as_deref(),
                self.env.assert_timeout,
            );
            let res = resource_arg(&w.api_version, &w.kind);
            let target = match &w.name {
                Some(n) => format!("{res}/{n}"),
                None => res.clone(),
            };
            let cond = match (&w.for_.condition, &w.for_.json_path) {
                (Some(c), _) => format!(
                    "--for=condition={}={}",
                    c.name,
                    c.value.as_deref().unwrap_or("true")
                ),
                (None, Some(j)) => format!("--for=jsonpath={}={}", j.path, j.value),
                (None, None) => "--for=delete".to_string(),
            };
            let ns = w.namespace.clone().unwrap_or_else(|| self.namespace.clone());
            let t = format!("--timeout={}s", timeout.as_secs().max(1));
            let mut args = vec![
                "wait",
                target.as_str(),
                cond.as_str(),
                "-n",
                ns.as_str(),
                t.as_str(),
            ];
            if w.name.is_none() {
                args.push("--all");
            }
            let out = self.kubectl(&args, None, timeout + Duration::from_secs(5));
            if !out.ok {
                return Err(format!("kubectl {}: {}", args.join(" "), out.stderr.trim()));
            }
        } else if let Some(s) = &op.script {
            let timeout = self.timeout(s.timeout.as_deref(), spec.exec.as_deref(), self.env.op_timeout);
            let mut c = Command::new("bash");
            c.arg("-c")
                .arg(&s.content)
                .env("NAMESPACE", &self.namespace)
                .env("KUBECONFIG", &self.env.kubeconfig)
                .env("HOME", &self.env.home)
                .current_dir(self.dir);
            for (k, v) in &self.env.script_env {
                c.env(k, v);
            }
            for e in &s.env {
                c.env(&e.name, &e.value);
            }
            let out = run_command(c, timeout, None);
            if !out.ok {
                return Err(format!("script failed:\n{}{}", out.stdout, out.stderr));
            }
            if !s.skip_log_output {
                return Ok(out.stdout);
            }
        } else if let Some(s) = &op.sleep {
            std::thread::sleep(scenario::duration(&s.duration).unwrap_or_default());
        } else if let Some(r) = op.get.as_ref().or(op.describe.as_ref()) {
            let (res, name, ns) = self.object_args(r);
            let verb = if op.get.is_some() { "get" } else { "describe" };
            let mut args = vec![verb, res.as_str(), "-n", ns.as_str()];
            if let Some(n) = &name {
                args.push(n);
            }
            if verb == "get" {
                args.extend(["-o", "yaml"]);
            }
            let out = self.kubectl(&args, None, self.env.op_timeout);
            return Ok(format!(
                "$ kubectl {}\n{}{}",
                args.join(" "),
                out.stdout,
                out.stderr
            ));
        } else if op.events.is_some() {
            let out = self.kubectl(
                &["get", "events", "-n", &self.namespace],
                None,
                self.env.op_timeout,
            );
            return Ok(format!(
                "$ kubectl get events -n {}\n{}{}",
                self.namespace, out.stdout, out.stderr
            ));
        } else if op.pod_logs.is_some() {
            self.notes
                .push("podLogs skipped: no containers run against the test API server".into());
        }
        Ok(String::new())
    }

    fn cleanup(&mut self) -> Result<(), String> {
        let timeout = self.timeout(
            None,
            self.test.spec.timeouts.cleanup.as_deref(),
            self.env.op_timeout,
        );
        let t = format!("--timeout={}s", timeout.as_secs().max(1));
        let mut errors = Vec::new();
        for (res, name, ns) in std::mem::take(&mut self.created).into_iter().rev() {
            let mut args = vec![
                "delete",
                res.as_str(),
                name.as_str(),
                "--ignore-not-found",
                "--wait",
                t.as_str(),
            ];
            if let Some(ns) = &ns {
                args.extend(["-n", ns.as_str()]);
            }
            let out = self.kubectl(&args, None, timeout + Duration::from_secs(5));
            if !out.ok {
                errors.push(format!("kubectl {}: {}", args.join(" "), out.stderr.trim()));
            }
        }
        let ns = self.namespace.clone();
        let out = self.kubectl(
            &["delete", "namespace", &ns, "--wait", &t],
            None,
            timeout + Duration::from_secs(5),
        );
        if !out.ok {
            errors.push(format!("deleting namespace {ns}: {}", out.stderr.trim()));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }
}

fn random_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut x = (nanos as u64) ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    let mut s = String::new();
    for _ in 0..8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(char::from(b'a' + (x % 26) as u8));
    }
    s
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs the scenario in `dir`.
///
/// # Errors
/// A [`Failure`] naming the step, the operation and what differed.
pub fn run(dir: &Path, env: &Env) -> Result<Passed, Box<Failure>> {
    let started = Instant::now();
    let fail = |test: &str, step: &str, operation: &str, detail: String| Failure {
        test: test.to_string(),
        step: step.to_string(),
        operation: operation.to_string(),
        detail,
        catch: String::new(),
        log_tail: env.log.as_deref().map(|l| tail(l, 40)).unwrap_or_default(),
    };
    let test = Test::load(dir)
        .map_err(|e| Box::new(fail(&dir.display().to_string(), "load", "-", e.to_string())))?;
    let name = test.metadata.name.clone();
    if test.spec.skip {
        return Ok(Passed {
            test: name,
            notes: vec!["skipped (spec.skip)".into()],
            elapsed: started.elapsed(),
        });
    }
    let namespace = format!("chainsaw-{}", random_suffix());
    let mut ctx = Ctx {
        dir,
        env,
        test: &test,
        namespace: namespace.clone(),
        bindings: [("namespace".to_string(), namespace.clone())].into(),
        created: Vec::new(),
        notes: Vec::new(),
    };
    let made = ctx.kubectl(&["create", "namespace", &namespace], None, env.op_timeout);
    if !made.ok {
        return Err(Box::new(fail(&name, "setup", "create namespace", made.stderr)));
    }
    let mut result = Ok(());
    'steps: for (i, step) in test.spec.steps.iter().enumerate() {
        let step_name = format!("step {} ({})", i + 1, step.name.as_deref().unwrap_or("unnamed"));
        for (j, op) in step.try_.iter().enumerate() {
            if let Err(detail) = ctx.execute(op) {
                let what = match op
                    .apply
                    .as_ref()
                    .or(op.create.as_ref())
                    .or(op.assert.as_ref())
                    .or(op.error.as_ref())
                    .or(op.patch.as_ref())
                {
                    Some(f) => format!("try[{j}] {} {}", op.name(), Ctx::describe(f)),
                    None => format!("try[{j}] {}", op.name()),
                };
                let mut failure = fail(&name, &step_name, &what, detail);
                for c in &step.catch {
                    match ctx.execute(c) {
                        Ok(out) => failure.catch.push_str(&out),
                        Err(e) => failure
                            .catch
                            .push_str(&format!("catch {} failed: {e}\n", c.name())),
                    }
                }
                for f in &step.finally {
                    let _ = ctx.execute(f);
                }
                result = Err(Box::new(failure));
                break 'steps;
            }
        }
        for (j, op) in step.finally.iter().enumerate() {
            if let Err(detail) = ctx.execute(op) {
                let failure = fail(&name, &step_name, &format!("finally[{j}] {}", op.name()), detail);
                result = Err(Box::new(failure));
                break 'steps;
            }
        }
    }
    let cleaned = ctx.cleanup();
    result?;
    cleaned.map_err(|e| Box::new(fail(&name, "cleanup", "delete", e)))?;
    Ok(Passed {
        test: name,
        notes: ctx.notes,
        elapsed: started.elapsed(),
    })
}

/// Scenario directories under `root` (those holding a `chainsaw-test.yaml`), sorted.
pub fn discover(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.join("chainsaw-test.yaml").is_file() {
            out.push(d.clone());
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_arguments_qualify_grouped_kinds() {
        assert_eq!(resource_arg("apps/v1", "Deployment"), "deployment.v1.apps");
        assert_eq!(resource_arg("v1", "ConfigMap"), "configmap");
        assert_eq!(
            resource_arg("kro.run/v1alpha1", "ResourceGraphDefinition"),
            "resourcegraphdefinition.v1alpha1.kro.run"
        );
    }

    #[test]
    fn namespaces_are_random_lowercase() {
        let a = random_suffix();
        assert_eq!(a.len(), 8);
        assert!(a.chars().all(|c| c.is_ascii_lowercase()));
    }
}
