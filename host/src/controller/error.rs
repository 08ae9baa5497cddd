//! Why the controller could not do something: one error type for every stage that talks to
//! the API server or loads plugins.

/// Why the controller could not do something.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable connection to the API server.
    #[error("cannot connect to the Kubernetes API: {0}")]
    Connect(String),
    /// A kind the server does not serve.
    #[error("{kind} ({api_version}) is not served by the API server: {message}")]
    UnknownKind {
        /// apiVersion.
        api_version: String,
        /// Kind.
        kind: String,
        /// What discovery said.
        message: String,
    },
    /// A request failed.
    #[error("{action} {object}: {}", describe(source))]
    Api {
        /// What was being done: `apply`, `delete`, `patch status of`, ...
        action: &'static str,
        /// The object, e.g. `Deployment shop/web`.
        object: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The plugin runtime could not start.
    #[error(transparent)]
    Plugin(#[from] crate::plugin::Error),
}

/// A client error as one line: the API's message with its code and reason, or the transport
/// error.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}

impl Error {
    /// Whether the API said the object changed underneath us (409) or is gone (404).
    pub(crate) fn is_conflict(&self) -> bool {
        matches!(self, Error::Api { source: kube::Error::Api(e), .. } if e.code == 409)
    }

    /// Whether the API said the object is gone (404).
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { source: kube::Error::Api(e), .. } if e.code == 404)
    }
}
