//! A graph's finalizer and deletion: its instances go first (kro refuses to orphan them), then
//! the CRD and the finalizer; and what the controller forgets of a graph that is gone.

use std::{sync::Arc, time::Duration};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::{Value, json};

use crate::controller::{action::Action, context::Context, error::Error, revisions::Revision};
use crate::{metadata, object::str_at, rgd::ResourceGraphDefinition};

use super::report::{Report, cond, write_status};

pub(super) async fn set_finalizers(
    ctx: &Context,
    name: &str,
    rgd: &Value,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let api = ctx.api(&crate::rgd::api_resource(), false, None).await;
    let value = if finalizers.is_empty() {
        Value::Null
    } else {
        json!(finalizers)
    };
    let patch = json!({"metadata": {"finalizers": value, "resourceVersion": str_at(rgd, "/metadata/resourceVersion")}});
    let params = PatchParams {
        field_manager: Some(metadata::RGD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    let written = api
        .patch(name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Api {
            action: "update finalizers of",
            object: format!("ResourceGraphDefinition {name}"),
            source,
        })?;
    ctx.remember_write(
        &crate::controller::informers::rgd_watch(),
        crate::controller::wire::to_value(written, &crate::rgd::api_resource()),
    );
    Ok(())
}

pub(super) fn finalizers(v: &Value) -> Vec<String> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Forgets what the controller remembers about a graph that is gone.
pub(super) fn forget_graph(ctx: &Context, name: &str) {
    ctx.graphs_seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(name);
    for users in ctx
        .interest
        .plugins
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values_mut()
    {
        users.remove(name);
    }
    ctx.interest
        .plugins
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|_, users| !users.is_empty());
    ctx.interest
        .crds
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|_, waiting| {
            waiting.remove(name);
            !waiting.is_empty()
        });
}

/// The instances of a graph's kind that exist, counted from the API (never from a cache,
/// which may not have been started or synced): the served revision's kind, else the kind the
/// RGD's schema names if this graph owns its CRD. `None` when there is no such kind (no CRD
/// of this graph, so no instance).
pub(super) async fn count_instances(
    ctx: &Context,
    name: &str,
    raw: &Value,
    revision: Option<&Revision>,
) -> Result<Option<(String, usize)>, Error> {
    let resource = match revision {
        Some(r) => r.resource.clone(),
        None => {
            let Ok(rgd) = ResourceGraphDefinition::from_value(raw, name) else {
                return Ok(None);
            };
            let names = crate::graph::crd::KindNames::of(&rgd);
            let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
            ctx.limiter.acquire().await;
            let owned = crds
                .get_opt(&names.crd_name())
                .await
                .ok()
                .flatten()
                .and_then(|c| c.metadata.labels)
                .is_some_and(|l| l.get(metadata::RGD_NAME).map(String::as_str) == Some(name));
            if !owned {
                return Ok(None);
            }
            match ctx
                .informers
                .kinds
                .resolve(&ctx.client, &names.api_version(), &names.kind)
                .await
            {
                Ok((resource, _)) => resource,
                Err(_) => return Ok(None),
            }
        }
    };
    let api = ctx.api(&resource, false, None).await;
    match api.list_metadata(&kube::api::ListParams::default()).await {
        Ok(list) => Ok(Some((resource.kind.clone(), list.items.len()))),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(source) => Err(Error::Api {
            action: "list",
            object: format!("{} instances", resource.kind),
            source,
        }),
    }
}

pub(super) async fn delete(ctx: &Arc<Context>, name: &str, raw: &Value) -> Result<Action, Error> {
    let revision = ctx.graphs.get(name);
    let (kind, remaining) = count_instances(ctx, name, raw, revision.as_deref())
        .await?
        .unwrap_or_default();
    if remaining > 0 {
        let mut report = Report::healthy(
            &kind,
            revision.as_ref().map(|r| r.graph.clone()),
            revision.as_ref().map(|r| r.number),
            "the graph is being deleted",
        );
        report.extra = Some(cond(
            "InstancesDeleted",
            false,
            "InstancesRemaining",
            format!(
                "{remaining} instance{} of {kind} still exist{}; the graph keeps serving them until they are deleted",
                if remaining == 1 { "" } else { "s" },
                if remaining == 1 { "s" } else { "" }
            ),
        ));
        write_status(ctx, name, raw, &report).await?;
        return Ok(Action::after(Duration::from_secs(2)));
    }
    if let Some(old) = ctx.graphs.remove(name) {
        ctx.informers.stop(&old.watch);
        if ctx.config.allow_crd_deletion {
            let crd_name = str_at(&old.graph.crd, "/metadata/name").to_string();
            let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
            if let Ok(Some(crd)) = crds.get_opt(&crd_name).await
                && crd
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(metadata::RGD_NAME))
                    .map(String::as_str)
                    == Some(name)
            {
                ctx.limiter.acquire().await;
                crds.delete(&crd_name, &DeleteParams::default())
                    .await
                    .map_err(|source| Error::Api {
                        action: "delete",
                        object: format!("CustomResourceDefinition {crd_name}"),
                        source,
                    })?;
                tracing::info!(crd = %crd_name, "deleted the graph's CRD (--allow-crd-deletion)");
            }
        }
    }
    let fins: Vec<String> = finalizers(raw)
        .into_iter()
        .filter(|f| f != metadata::FINALIZER)
        .collect();
    if fins.len() != finalizers(raw).len() {
        set_finalizers(ctx, name, raw, fins).await?;
    }
    Ok(Action::done())
}
