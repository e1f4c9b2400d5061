//! Typed errors of the core; the bindings map each variant to a Python exception.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// A pattern/phrase set or a single pattern is unusable (empty, too long, ...).
    #[error("invalid pattern: {0}")]
    InvalidPattern(String),
    /// An argument is out of its allowed range (sizes, offsets, ids).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An operation that is not allowed in the object's current state (e.g. push after stop).
    #[error("invalid state: {0}")]
    InvalidState(String),
}
