//! Kubernetes object schemas shared by kroxide's offline tools and its test API server, so the
//! offline and live paths cannot diverge: the catalog of built-in kinds, the server-side defaults of built-in kinds, and (for custom
//! resources) structural-schema pruning, defaulting and validation.

pub mod defaults;
pub mod kinds;
pub mod openapi;
pub mod quantity;
pub mod selector;
pub mod structural;
