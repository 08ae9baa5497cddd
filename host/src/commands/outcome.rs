//! What a command printed, and its exit status.

/// What a command printed and whether it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Text for stdout.
    pub stdout: String,
    /// Text for stderr.
    pub stderr: String,
    /// Exit status: 0 success, 1 failure, [`EXIT_PENDING`] when `render` left resources out.
    pub code: u8,
}

/// The exit status of `kroxide render` when resources were left out (and `--allow-pending`
/// was not given).
pub const EXIT_PENDING: u8 = 2;

impl Outcome {
    pub(crate) fn ok(stdout: String, stderr: String) -> Self {
        Self {
            stdout,
            stderr,
            code: 0,
        }
    }
}
