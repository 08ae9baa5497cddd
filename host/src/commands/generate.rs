//! `kroxide generate crd`: kroxide's ResourceGraphDefinition CRD, or the CRD an RGD generates.

use std::path::Path;

use super::{
    error::Error,
    render::{load_graph, offline_catalog},
};
use crate::{graph::crd, yaml};

/// The CRD as YAML: the RGD CRD without `rgd`, the instance CRD of the RGD in `rgd` otherwise.
///
/// # Errors
/// The RGD file cannot be read or is not a valid graph.
pub fn crd(rgd: Option<&Path>) -> Result<String, Error> {
    let value = match rgd {
        None => crd::rgd_crd(),
        Some(path) => {
            load_graph(path, &offline_catalog(&[]), crate::graph::Limits::default())?
                .1
                .crd
        }
    };
    Ok(yaml::to_string(&value))
}
