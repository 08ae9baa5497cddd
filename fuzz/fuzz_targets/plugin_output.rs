//! Fuzz target: what a hostile plugin could return from `transform` and `derive-status`, checked
//! by `kroxide::fuzzing::plugin_*_output`. The JSON fields are arbitrary strings, and often JSON.
#![no_main]

use arbitrary::{Result, Unstructured};
use kroxide::plugin::bindings::{
    ChildKey, Condition, ConditionStatus, Desired, Event, Readiness, Severity, StatusOutput,
    TransformOutput,
};

fn json(u: &mut Unstructured<'_>) -> Result<String> {
    // Half the time a structurally plausible object, so the checks past parsing are reached.
    if u.arbitrary()? {
        let name: String = u.arbitrary()?;
        let kind: String = u.arbitrary()?;
        let extra: String = u.arbitrary()?;
        Ok(format!(
            r#"{{"apiVersion":"v1","kind":{kind:?},"metadata":{{"name":{name:?}}},{extra}"#
        ))
    } else {
        u.arbitrary()
    }
}

fn key(u: &mut Unstructured<'_>) -> Result<ChildKey> {
    Ok(ChildKey {
        id: u.arbitrary()?,
        index: u.arbitrary()?,
    })
}

fn readiness(u: &mut Unstructured<'_>) -> Result<Readiness> {
    Ok(*u.choose(&[Readiness::Unknown, Readiness::Ready, Readiness::NotReady])?)
}

fn events(u: &mut Unstructured<'_>) -> Result<Vec<Event>> {
    let n = u.int_in_range(0..=4)?;
    (0..n)
        .map(|_| {
            Ok(Event {
                severity: *u.choose(&[Severity::Normal, Severity::Warning])?,
                reason: u.arbitrary()?,
                message: u.arbitrary()?,
                target: if u.arbitrary()? { Some(key(u)?) } else { None },
            })
        })
        .collect()
}

fn outputs(u: &mut Unstructured<'_>) -> Result<(TransformOutput, StatusOutput)> {
    let n = u.int_in_range(0..=8)?;
    let desired = (0..n)
        .map(|_| {
            Ok(Desired {
                key: key(u)?,
                object: json(u)?,
                ready: readiness(u)?,
            })
        })
        .collect::<Result<_>>()?;
    let transform = TransformOutput {
        desired,
        events: events(u)?,
        requeue_after_ms: u.arbitrary()?,
    };
    let n = u.int_in_range(0..=4)?;
    let conditions = (0..n)
        .map(|_| {
            Ok(Condition {
                type_: u.arbitrary()?,
                status: *u.choose(&[
                    ConditionStatus::True,
                    ConditionStatus::False,
                    ConditionStatus::Unknown,
                ])?,
                reason: u.arbitrary()?,
                message: u.arbitrary()?,
            })
        })
        .collect::<Result<_>>()?;
    let status = StatusOutput {
        status: json(u)?,
        conditions,
        ready: readiness(u)?,
        events: events(u)?,
    };
    Ok((transform, status))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok((transform, status)) = outputs(&mut Unstructured::new(data)) {
        kroxide::fuzzing::plugin_transform_output(transform);
        kroxide::fuzzing::plugin_status_output(status);
    }
});
