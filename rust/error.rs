//! The one error type of the core: a kind (which stage refused) and a specific,
//! lowercase message naming the input (file, term, field or byte offset).

use std::fmt;

/// Which stage refused the input. Each maps to its own Python exception class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A source is unusable (invalid UTF-8, empty input list).
    Input,
    /// The term spec is malformed.
    Spec,
    /// Planning failed (a `requires` cycle, a colliding explicit tag id).
    Plan,
    /// The token counter failed.
    Count,
    /// An artifact could not be read.
    Artifact,
}

/// An error from the core, with a message that names the offending input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub(crate) fn spec(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Spec, message)
    }
    pub(crate) fn artifact(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Artifact, message)
    }
    /// The stage that refused.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
