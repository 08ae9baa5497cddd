//! Converts between the WIT records and the SDK's types; the `export!` macro calls these.

use serde_json::Value;

use crate::{
    bindings,
    desired::{Desired, DesiredChild, PendingNode, Status},
    error::{Error, decode},
    instance::Instance,
    observed::{Child, Observed},
    plugin::{Context, Plugin},
    types::{Key, Readiness, is_valid_id},
};
use kroxide_contract::{HOST_CONDITIONS, HOST_STATUS_FIELDS};

/// Parses JSON the host sent. The host only sends valid JSON, so the message stays short
/// (formatting serde_json's own error would cost every plugin kilobytes of code).
fn parse(json: &str, what: &str) -> Result<Value, Error> {
    serde_json::from_str(json).map_err(|_| Error::invalid_input(format!("{what}: not valid JSON")))
}

fn config<P: Plugin>(json: &str) -> Result<P::Config, Error> {
    let value = if json.trim().is_empty() {
        Value::Null
    } else {
        parse(json, "config")?
    };
    match value {
        // No config, or an empty one, is the plugin's default configuration.
        Value::Null => Ok(P::Config::default()),
        Value::Object(map) if map.is_empty() => Ok(P::Config::default()),
        value => decode(&value, "config").map_err(Error::InvalidConfig),
    }
}

fn observed(list: Vec<bindings::Observed>) -> Result<Observed, Error> {
    let children = list
        .into_iter()
        .map(|o| {
            let key = Key::from_wit(o.key);
            let object = parse(&o.object, &format!("observed {key}"))?;
            Ok(Child::new(key, object))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Observed::new(children))
}

fn to_json(value: &Value) -> String {
    // serde_json's map is a BTreeMap (no `preserve_order`): keys come out sorted.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

/// `info` export.
pub fn info<P: Plugin>() -> bindings::PluginInfo {
    crate::log::install_panic_hook();
    bindings::PluginInfo {
        name: P::NAME.to_string(),
        version: P::VERSION.to_string(),
        description: P::DESCRIPTION.to_string(),
    }
}

/// `validate-config` export.
///
/// # Errors
/// The config does not decode or the plugin refuses it.
pub fn validate_config<P: Plugin>(config_json: String) -> Result<(), bindings::PluginError> {
    crate::log::install_panic_hook();
    config::<P>(&config_json)
        .and_then(|c| P::validate_config(&c))
        .map_err(Error::into_wit)
}

/// `transform` export.
///
/// # Errors
/// The input does not decode, the plugin fails, or its output breaks the contract.
pub fn transform<P: Plugin>(
    input: bindings::TransformInput,
) -> Result<bindings::TransformOutput, bindings::PluginError> {
    crate::log::install_panic_hook();
    transform_inner::<P>(input).map_err(Error::into_wit)
}

fn transform_inner<P: Plugin>(input: bindings::TransformInput) -> Result<bindings::TransformOutput, Error> {
    let config = config::<P>(&input.meta.config)?;
    let instance = Instance::from_value(parse(&input.instance, "instance")?);
    let observed = observed(input.observed)?;
    let rendered = input
        .rendered
        .into_iter()
        .map(|d| {
            let key = Key::from_wit(d.key);
            let object = parse(&d.object, &format!("rendered {key}"))?;
            Ok((
                key,
                DesiredChild {
                    object,
                    ready: Readiness::from_wit(d.ready),
                },
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let pending = input
        .pending
        .into_iter()
        .map(|p| PendingNode {
            id: p.id,
            reason: p.reason,
        })
        .collect();
    let mut desired = Desired::new(rendered, pending);
    let cx = Context {
        graph: &input.meta.graph,
        revision: input.meta.revision,
        config: &config,
        instance: &instance,
        observed: &observed,
    };
    P::transform(&cx, &mut desired)?;
    let (children, events, requeue) = desired.into_parts();
    let mut out = Vec::with_capacity(children.len());
    for (key, child) in children {
        if !is_valid_id(&key.id) {
            return Err(Error::internal(format!(
                "desired child id '{}': must match ^[a-z][a-zA-Z0-9]*$",
                key.id
            )));
        }
        match &child.object {
            Value::Object(map) if map.contains_key("status") => {
                return Err(Error::internal(format!(
                    "desired {key}: carries `status`; plugins never write status through transform"
                )));
            }
            Value::Object(_) => {}
            _ => return Err(Error::internal(format!("desired {key}: must be a JSON object"))),
        }
        out.push(bindings::Desired {
            key: key.to_wit(),
            object: to_json(&child.object),
            ready: child.ready.to_wit(),
        });
    }
    Ok(bindings::TransformOutput {
        desired: out,
        events: events.iter().map(|e| e.to_wit()).collect(),
        requeue_after_ms: requeue.map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
    })
}

/// `derive-status` export.
///
/// # Errors
/// The input does not decode, the plugin fails, or its output breaks the contract.
pub fn derive_status<P: Plugin>(
    input: bindings::StatusInput,
) -> Result<bindings::StatusOutput, bindings::PluginError> {
    crate::log::install_panic_hook();
    derive_status_inner::<P>(input).map_err(Error::into_wit)
}

fn derive_status_inner<P: Plugin>(input: bindings::StatusInput) -> Result<bindings::StatusOutput, Error> {
    let config = config::<P>(&input.meta.config)?;
    let instance = Instance::from_value(parse(&input.instance, "instance")?);
    let observed = observed(input.observed)?;
    let cx = Context {
        graph: &input.meta.graph,
        revision: input.meta.revision,
        config: &config,
        instance: &instance,
        observed: &observed,
    };
    let mut status = Status::default();
    P::derive_status(&cx, &mut status)?;
    let (fields, conditions, ready, events) = status.into_parts();
    for reserved in HOST_STATUS_FIELDS {
        if fields.contains_key(reserved) {
            return Err(Error::internal(format!(
                "status.{reserved}: belongs to the host; a plugin cannot set it"
            )));
        }
    }
    if let Some(c) = conditions
        .iter()
        .find(|c| HOST_CONDITIONS.contains(&c.type_.as_str()))
    {
        return Err(Error::internal(format!(
            "condition type '{}' belongs to the host; report readiness with Status::ready instead",
            c.type_
        )));
    }
    Ok(bindings::StatusOutput {
        status: to_json(&Value::Object(fields)),
        conditions: conditions.iter().map(|c| c.to_wit()).collect(),
        ready: ready.to_wit(),
        events: events.iter().map(|e| e.to_wit()).collect(),
    })
}
