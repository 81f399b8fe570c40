//! The engine's error type: every variant says what went wrong and, where
//! there is one, what to do about it.

use std::io;

/// Errors raised by the engine. The CLI prints them as one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: {0}")]
    Version(String),
    /// The peer sent something that is not a valid control message.
    #[error("malformed control message: {0}")]
    Protocol(String),
    /// The peer refused authentication, or we refused the peer's.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The agent refused the test (caps, interface, port, ...).
    #[error("agent refused the test: {0}")]
    Refused(String),
    /// A test parameter is invalid before anything touched the network.
    #[error("invalid parameter: {0}")]
    Invalid(String),
    /// The peer went away or stopped responding.
    #[error("peer lost: {0}")]
    PeerLost(String),
    /// An operation needs privileges this process lacks.
    #[error("permission denied: {0}")]
    Privilege(String),
    /// A socket or file operation failed; the string says which.
    /// (The cause is in the message, not a `source`, so it prints once.)
    #[error("{context}: {err}")]
    Io { context: String, err: io::Error },
}

/// Shorthand used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wrap an I/O error with what we were doing when it happened.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        let context = context.into();
        if source.kind() == io::ErrorKind::PermissionDenied {
            return Error::Privilege(format!("{context}: {source}"));
        }
        Error::Io {
            context,
            err: source,
        }
    }
}

/// Extension to attach context to `io::Result`s.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}
