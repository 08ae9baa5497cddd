//! Watches: newline-delimited JSON events streamed as they happen, replayed from any
//! resourceVersion still in the history (410 `Expired` in the stream when it is not),
//! synthetic ADDED events for a watch from `0`, `sendInitialEvents` with its closing bookmark,
//! periodic bookmarks, selector transitions (an object that stops matching is DELETED), Table
//! events for `kubectl get -w`, and `timeoutSeconds`.

use std::{collections::HashMap, convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use chrono::Utc;
use futures::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::{
    Response,
    body::Frame,
    header::{CONTENT_TYPE, HeaderValue},
};
use serde_json::{Value, json};
use tokio::sync::{broadcast::error::RecvError, mpsc};

use crate::{
    handlers::Filter,
    registry::ResourceType,
    request::Representation,
    server::{Body, Shared},
    state::State,
    store::{Event, EventType},
    table::{Include, Printer, partial},
};

struct Encoder {
    rt: Arc<ResourceType>,
    repr: Representation,
    printer: Option<Printer>,
    sent_definitions: bool,
}

impl Encoder {
    fn event(
        &mut self,
        state_present: impl Fn(&Value) -> Value,
        kind: &str,
        object: &Value,
        event: Option<&Event>,
    ) -> Bytes {
        let body: Bytes = match (&self.repr, &self.printer) {
            (Representation::Table, Some(p)) => {
                let shown = state_present(object);
                let t = p.table(
                    [&shown],
                    object
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str),
                    !self.sent_definitions,
                    Utc::now(),
                );
                self.sent_definitions = true;
                Bytes::from(serde_json::to_vec(&t).unwrap_or_default())
            }
            (Representation::Metadata, _) => {
                Bytes::from(serde_json::to_vec(&partial(object)).unwrap_or_default())
            }
            _ => match event {
                Some(e) if !State::needs_presenting(&self.rt) => e.encoded().clone(),
                Some(e) => e.presented(&self.rt.api_version(), state_present),
                None => Bytes::from(serde_json::to_vec(&state_present(object)).unwrap_or_default()),
            },
        };
        let mut out = Vec::with_capacity(body.len() + 32);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        out.extend_from_slice(&body);
        out.extend_from_slice(b"}\n");
        Bytes::from(out)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": meta});
        let mut out = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }
}

fn expired(requested: u64, oldest: u64) -> Bytes {
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: {requested} ({oldest})"), "reason": "Expired", "code": 410});
    let mut out = serde_json::to_vec(&json!({"type": "ERROR", "object": status})).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

/// The watch event an observer with `filter` sees for `e`, if any.
fn translate(e: &Event, key: &str, filter: &Filter) -> Option<&'static str> {
    if &*e.key != key {
        return None;
    }
    if let Some(ns) = &filter.namespace
        && e.namespace != *ns
    {
        return None;
    }
    let now = filter.matches(&e.object);
    let before = e.previous.as_ref().map(|p| filter.matches(p));
    match e.kind {
        EventType::Added => now.then_some("ADDED"),
        EventType::Deleted => before.unwrap_or(now).then_some("DELETED"),
        EventType::Modified => match (before.unwrap_or(false), now) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }
}

/// Encodes `e` as `kind`. An object that stops matching the watch's selectors is DELETED as
/// it last matched (its previous state), at the change's resourceVersion, as the real
/// server's watch cache sends it.
fn encode(encoder: &mut Encoder, present: &impl Fn(&Value) -> Value, kind: &str, e: &Event) -> Bytes {
    match (&e.kind, kind, &e.previous) {
        (EventType::Modified, "DELETED", Some(previous)) => {
            let mut last = (**previous).clone();
            if let Some(m) = last.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert("resourceVersion".into(), Value::String(e.rv.to_string()));
            }
            encoder.event(present, kind, &last, None)
        }
        _ => encoder.event(present, kind, &e.object, Some(e)),
    }
}

/// Starts a watch and returns the streaming response.
pub fn serve(
    shared: Arc<Shared>,
    rt: Arc<ResourceType>,
    filter: Filter,
    q: &HashMap<String, String>,
    repr: Representation,
) -> Response<Body> {
    let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
    let send_initial = q.get("sendInitialEvents").is_some_and(|v| v == "true");
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(shared.watch_timeout);
    let printer = (repr == Representation::Table).then(|| {
        Printer::new(
            &rt,
            Include::from_param(q.get("includeObject").map(String::as_str)),
        )
    });
    let (tx, mut rx_body) = mpsc::channel::<Bytes>(256);
    let key = rt.storage_key();
    let mut encoder = Encoder {
        rt: rt.clone(),
        repr,
        printer,
        sent_definitions: false,
    };

    // Snapshot and subscription under one lock, so no event falls between them.
    type Start = (Vec<Arc<Value>>, u64, Result<Vec<Arc<Event>>, u64>);
    let (mut events, (initial, mut seen, replay)): (_, Start) = {
        let state = shared.lock();
        let events = state.store.subscribe();
        let current = state.store.rv();
        if rv_param.is_empty() || rv_param == "0" || send_initial {
            let initial = state
                .store
                .list(&key, filter.namespace.as_deref())
                .filter(|o| filter.matches(o))
                .cloned()
                .collect();
            (events, (initial, current, Ok(Vec::new())))
        } else {
            match rv_param.parse::<u64>() {
                Ok(rv) => match state.store.since(rv) {
                    Ok(replay) => (events, (Vec::new(), rv, Ok(replay))),
                    Err(e) => (events, (Vec::new(), rv, Err(e.oldest))),
                },
                Err(_) => (events, (Vec::new(), current, Err(0))),
            }
        }
    };
    let present = {
        let shared = shared.clone();
        let rt = rt.clone();
        move |v: &Value| {
            if State::needs_presenting(&rt) {
                shared.lock().present(&rt, v)
            } else {
                v.clone()
            }
        }
    };
    let mut epoch = shared.watch_epoch.subscribe();
    let mut stopping = shared.stopping.subscribe();
    let bookmark_interval = shared.bookmark_interval;
    let requested = rv_param.parse::<u64>().unwrap_or(0);
    tokio::spawn(async move {
        let replay = match replay {
            Ok(r) => r,
            Err(oldest) => {
                let _ = tx.send(expired(requested, oldest)).await;
                return;
            }
        };
        for obj in &initial {
            if tx
                .send(encoder.event(&present, "ADDED", obj, None))
                .await
                .is_err()
            {
                return;
            }
        }
        if send_initial && tx.send(encoder.bookmark(seen, true)).await.is_err() {
            return;
        }
        for e in &replay {
            seen = e.rv;
            if let Some(kind) = translate(e, &key, &filter)
                && tx.send(encode(&mut encoder, &present, kind, e)).await.is_err()
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(bookmark_interval);
        ticker.tick().await;
        let before_end = timeout.checked_sub(Duration::from_secs(2));
        let pretimeout = tokio::time::sleep(before_end.unwrap_or(timeout));
        tokio::pin!(pretimeout);
        let mut warned = before_end.is_none();
        loop {
            tokio::select! {
                received = events.recv() => match received {
                    Ok(e) => {
                        if e.rv <= seen {
                            continue;
                        }
                        seen = e.rv;
                        if let Some(kind) = translate(&e, &key, &filter)
                            && tx.send(encode(&mut encoder, &present, kind, &e)).await.is_err()
                        {
                            return;
                        }
                    }
                    // A watcher that fell behind is closed; the client re-watches from its last RV.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
                },
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(encoder.bookmark(seen, false)).await.is_err() {
                        return;
                    }
                }
                // As the real watch cache: one bookmark 2 s before the watch times out (none
                // for watches shorter than that), none at the end itself.
                _ = &mut pretimeout, if bookmarks && !warned => {
                    warned = true;
                    if tx.send(encoder.bookmark(seen, false)).await.is_err() {
                        return;
                    }
                }
                _ = &mut deadline => return,
                _ = epoch.changed() => return,
                _ = stopping.changed() => return,
            }
        }
    });
    let body = stream::poll_fn(move |cx| {
        rx_body
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok::<_, Infallible>(Frame::data(b))))
    });
    let mut r = Response::new(StreamBody::new(body).boxed());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache, private"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn an_object_that_stops_matching_a_selector_is_deleted_for_that_watcher() {
        let mut s = Store::new(10);
        let mut rx = s.subscribe();
        s.put(
            "/configmaps",
            "default",
            "a",
            json!({"metadata": {"name": "a", "labels": {"app": "x"}}}),
        );
        s.put(
            "/configmaps",
            "default",
            "a",
            json!({"metadata": {"name": "a", "labels": {"app": "y"}}}),
        );
        s.put(
            "/configmaps",
            "other",
            "b",
            json!({"metadata": {"name": "b", "labels": {"app": "x"}}}),
        );
        let filter = Filter {
            namespace: Some("default".into()),
            labels: kroxide_schema::selector::Selector::parse("app=x").unwrap(),
            ..Filter::default()
        };
        let seen: Vec<Option<&str>> = (0..3)
            .map(|_| rx.try_recv().unwrap())
            .map(|e| translate(&e, "/configmaps", &filter))
            .collect();
        assert_eq!(seen, [Some("ADDED"), Some("DELETED"), None]);
    }
}
