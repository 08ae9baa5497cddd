//! What tests see and steer: a record of every request (verb, resource, field manager, user
//! agent, status code) for request budgets, and programmable faults (errors per verb and
//! resource, added latency).

use std::{collections::BTreeMap, sync::Mutex, time::Duration};

use serde_json::{Value, json};

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, or
    /// `discovery` / `openapi` / `version` for non-resource paths.
    pub verb: String,
    /// API group.
    pub group: String,
    /// Plural resource (empty for non-resource paths).
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Namespace.
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// Field manager of a write (the `fieldManager` parameter or the user agent's prefix).
    pub field_manager: String,
    /// For `patch`: `apply`, `merge`, `json` or `strategic`.
    pub patch_type: String,
    /// `User-Agent`.
    pub user_agent: String,
    /// HTTP status code of the reply.
    pub code: u16,
}

impl Request {
    /// Whether this request changes state (POST/PUT/PATCH/DELETE).
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }

    /// As JSON, for the debug endpoint.
    pub fn to_json(&self) -> Value {
        json!({"verb": self.verb, "group": self.group, "resource": self.resource, "subresource": self.subresource,
            "namespace": self.namespace, "name": self.name, "fieldManager": self.field_manager,
            "patchType": self.patch_type, "userAgent": self.user_agent, "code": self.code})
    }
}

/// The most recent requests since start (or the last reset), up to [`Counters::CAPACITY`].
#[derive(Debug, Default)]
pub struct Counters {
    log: Mutex<std::collections::VecDeque<Request>>,
}

impl Counters {
    /// Records kept; older ones are dropped so a long-running server stays bounded.
    pub const CAPACITY: usize = 500_000;

    /// Records a request.
    pub fn record(&self, r: Request) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() == Self::CAPACITY {
            log.pop_front();
        }
        log.push_back(r);
    }

    /// A copy of the kept records, oldest first.
    pub fn snapshot(&self) -> Vec<Request> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Forgets every record.
    pub fn reset(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Counts by (verb, resource[/subresource], field manager) of the records `filter` keeps.
    pub fn summary(&self, filter: impl Fn(&Request) -> bool) -> BTreeMap<(String, String, String), usize> {
        let mut out = BTreeMap::new();
        for r in self.snapshot().iter().filter(|r| filter(r)) {
            let resource = if r.subresource.is_empty() {
                r.resource.clone()
            } else {
                format!("{}/{}", r.resource, r.subresource)
            };
            *out.entry((r.verb.clone(), resource, r.field_manager.clone()))
                .or_insert(0) += 1;
        }
        out
    }

    /// The summary as an aligned text table, for test output.
    pub fn table(&self, filter: impl Fn(&Request) -> bool) -> String {
        let rows = self.summary(filter);
        let mut out = format!(
            "{:<18} {:<40} {:<28} {:>5}\n",
            "VERB", "RESOURCE", "FIELD MANAGER", "COUNT"
        );
        for ((verb, resource, manager), n) in rows {
            out.push_str(&format!("{verb:<18} {resource:<40} {manager:<28} {n:>5}\n"));
        }
        out
    }
}

/// A programmed failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fault {
    /// Only this verb (any when `None`).
    pub verb: Option<String>,
    /// Only this resource (plural; any when `None`).
    pub resource: Option<String>,
    /// HTTP code to answer with: 500, 429, 409, 503, ...
    pub code: u16,
    /// `Retry-After` seconds.
    pub retry_after: Option<u64>,
    /// How many requests it fails (forever when `None`).
    pub times: Option<usize>,
    /// Held this long before it is answered (with `code` 0: answered normally after the delay).
    pub delay: Option<Duration>,
}

impl Fault {
    /// Fails every request of `verb` on `resource` with `code`.
    pub fn new(verb: &str, resource: &str, code: u16) -> Self {
        Self {
            verb: Some(verb.into()),
            resource: Some(resource.into()),
            code,
            ..Self::default()
        }
    }

    /// Delays every request of `verb` on `resource` by `d`, then serves it normally.
    pub fn delay(verb: &str, resource: &str, d: Duration) -> Self {
        Self {
            verb: Some(verb.into()),
            resource: Some(resource.into()),
            delay: Some(d),
            ..Self::default()
        }
    }

    /// Only the next `n` matching requests.
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }

    /// With a `Retry-After` header.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

/// The programmed faults.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Fault>>,
    latency: Mutex<Duration>,
}

impl Faults {
    /// Adds a fault.
    pub fn add(&self, f: Fault) {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).push(f);
    }

    /// Removes every fault and the added latency.
    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clear();
        *self.latency.lock().unwrap_or_else(|e| e.into_inner()) = Duration::ZERO;
    }

    /// Faults programmed and not used up yet (a fault of `times(n)` goes once its `n`
    /// requests have arrived).
    pub fn pending(&self) -> usize {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Delays every request by `d`.
    pub fn set_latency(&self, d: Duration) {
        *self.latency.lock().unwrap_or_else(|e| e.into_inner()) = d;
    }

    /// The added latency.
    pub fn latency(&self) -> Duration {
        *self.latency.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fault a request triggers, if any (consuming one of its `times`).
    pub fn check(&self, verb: &str, resource: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        let i = rules.iter().position(|f| {
            f.verb.as_deref().is_none_or(|v| v == verb) && f.resource.as_deref().is_none_or(|r| r == resource)
        })?;
        let fault = rules[i].clone();
        if let Some(n) = &mut rules[i].times {
            *n = n.saturating_sub(1);
            if *n == 0 {
                rules.remove(i);
            }
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_with_a_count_expires() {
        let f = Faults::default();
        f.add(Fault::new("create", "configmaps", 500).times(2));
        assert!(f.check("get", "configmaps").is_none());
        assert_eq!(f.check("create", "configmaps").unwrap().code, 500);
        assert!(f.check("create", "configmaps").is_some());
        assert!(f.check("create", "configmaps").is_none());
    }

    #[test]
    fn summaries_group_by_verb_resource_and_manager() {
        let c = Counters::default();
        let req = |verb: &str, sub: &str| Request {
            verb: verb.into(),
            resource: "widgets".into(),
            subresource: sub.into(),
            field_manager: "m".into(),
            ..Request::default_for_tests()
        };
        c.record(req("patch", ""));
        c.record(req("patch", ""));
        c.record(req("patch", "status"));
        let s = c.summary(|r| r.is_write());
        assert_eq!(s[&("patch".into(), "widgets".into(), "m".into())], 2);
        assert_eq!(s[&("patch".into(), "widgets/status".into(), "m".into())], 1);
        assert!(c.table(|_| true).contains("widgets/status"));
    }

    impl Request {
        fn default_for_tests() -> Self {
            Request {
                verb: String::new(),
                group: String::new(),
                resource: String::new(),
                subresource: String::new(),
                namespace: String::new(),
                name: String::new(),
                field_manager: String::new(),
                patch_type: String::new(),
                user_agent: String::new(),
                code: 200,
            }
        }
    }
}
