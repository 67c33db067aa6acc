//! [`Error`]: everything that can go wrong below the commands, and [`ExecuteError`].

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A failure of the store: I/O, a damaged or unknown log, a replay that diverged.
///
/// Every variant names where it happened (a file, a log position), so that the message alone
/// says what to look at.
///
/// # Examples
///
/// ```
/// use stm_persist::Error;
///
/// let e = Error::UnknownCommand { position: 7, name: "Launch".into() };
/// assert_eq!(
///     e.to_string(),
///     "log record 7 names the command `Launch`, which this program does not accept; \
///      nothing at or after it was applied"
/// );
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    Io {
        /// What the store was doing.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Another process or store holds the directory in a mode that excludes this one.
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// A record or snapshot was written by a newer (or unknown) format.
    UnsupportedFormat {
        /// `"log record"`, `"log segment"` or `"snapshot"`, with its position or file.
        what: String,
        /// The version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// Damage that is not a torn tail: a bad checksum with valid data after it, a gap in the
    /// sequence numbers, an undecodable payload. Nothing past it is applied.
    Corrupt {
        /// Where: a file and offset, or a log position.
        location: String,
        /// What is wrong.
        detail: String,
    },
    /// The transaction checker (SPTM's) rejected a record: its command is not accepted.
    UnknownCommand {
        /// The log position of the record.
        position: u64,
        /// The command name the record carries.
        name: String,
    },
    /// A logged command failed when replayed: `apply` is not deterministic, or the program
    /// changed its meaning.
    Replay {
        /// The log position of the record.
        position: u64,
        /// The command name.
        name: String,
        /// How it failed.
        detail: String,
    },
    /// The log records this replica needs next were dropped by a snapshot elsewhere; reopen
    /// the store to start from that snapshot.
    Lagging {
        /// The next position this replica needs.
        needed: u64,
        /// The first position still in the log.
        first_available: u64,
    },
    /// An earlier write to the log failed (or the backend panicked) after its transaction
    /// committed in memory: memory is ahead of the log, so the store refuses further
    /// commands. Reopen it.
    Poisoned,
    /// A command or a snapshot image could not be serialized (the log is unchanged).
    Serialize {
        /// What: `command `Name`` or `snapshot`.
        what: String,
        /// The serializer's message.
        detail: String,
    },
    /// The log broke the protocol its store relies on: another process appended to a log
    /// this store opened as exclusive. The store is poisoned; nothing was overwritten.
    NotExclusive {
        /// The position this store was about to append at.
        expected: u64,
        /// The position the log was at.
        found: u64,
    },
    /// In a shared store, a command in the same group commit as this one panicked while the
    /// leader checked or applied it (its `apply` behaves differently from one run to the
    /// next). This command's record may or may not be in the log:
    /// [`Store::sync`](crate::Store::sync) shows.
    CommandPanicked,
    /// An error reported by a backend (PostgreSQL, or your own).
    Backend(String),
}

impl Error {
    /// An [`Error::Io`] with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The same error again, for the second and later callers that one failure reaches (a
    /// group commit reports it to every caller in the batch). `Io` keeps its kind and message.
    pub(crate) fn again(&self) -> Self {
        match self {
            Error::Io { context, source } => Error::Io {
                context: context.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Error::Locked { path } => Error::Locked { path: path.clone() },
            Error::UnsupportedFormat {
                what,
                found,
                supported,
            } => Error::UnsupportedFormat {
                what: what.clone(),
                found: *found,
                supported: *supported,
            },
            Error::Corrupt { location, detail } => Error::corrupt(location.clone(), detail.clone()),
            Error::UnknownCommand { position, name } => Error::UnknownCommand {
                position: *position,
                name: name.clone(),
            },
            Error::Replay {
                position,
                name,
                detail,
            } => Error::Replay {
                position: *position,
                name: name.clone(),
                detail: detail.clone(),
            },
            Error::Lagging {
                needed,
                first_available,
            } => Error::Lagging {
                needed: *needed,
                first_available: *first_available,
            },
            Error::Poisoned => Error::Poisoned,
            Error::Serialize { what, detail } => Error::Serialize {
                what: what.clone(),
                detail: detail.clone(),
            },
            Error::NotExclusive { expected, found } => Error::NotExclusive {
                expected: *expected,
                found: *found,
            },
            Error::CommandPanicked => Error::CommandPanicked,
            Error::Backend(msg) => Error::Backend(msg.clone()),
        }
    }

    pub(crate) fn corrupt(location: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            location: location.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Locked { path } => write!(
                f,
                "the store {} is in use by another process or store in an incompatible mode",
                path.display()
            ),
            Error::UnsupportedFormat {
                what,
                found,
                supported,
            } => write!(
                f,
                "{what} has format version {found}; this build reads version {supported}"
            ),
            Error::Corrupt { location, detail } => write!(f, "corrupt log at {location}: {detail}"),
            Error::UnknownCommand { position, name } => write!(
                f,
                "log record {position} names the command `{name}`, which this program does not \
                 accept; nothing at or after it was applied"
            ),
            Error::Replay {
                position,
                name,
                detail,
            } => write!(
                f,
                "replaying log record {position} (`{name}`) failed: {detail}; is apply \
                 deterministic?"
            ),
            Error::Lagging {
                needed,
                first_available,
            } => write!(
                f,
                "this replica needs log record {needed}, but the log now starts at \
                 {first_available} (a snapshot compacted it); reopen the store"
            ),
            Error::Poisoned => f.write_str(
                "an earlier log write failed after its command committed in memory; reopen the \
                 store",
            ),
            Error::Serialize { what, detail } => write!(f, "cannot serialize the {what}: {detail}"),
            Error::NotExclusive { expected, found } => write!(
                f,
                "another process appended to this exclusive log (this store was about to \
                 append record {expected}, the log was at {found}); open shared logs with \
                 Store::open_shared"
            ),
            Error::CommandPanicked => f.write_str(
                "a command committed in the same group as this one panicked; this command's \
                 record may or may not be in the log (sync() shows)",
            ),
            Error::Backend(msg) => write!(f, "log backend: {msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What [`Store::execute`](crate::Store::execute) returns on failure: the command's own error
/// (nothing was logged or changed), or a store error.
///
/// # Examples
///
/// ```
/// use stm_persist::{Error, ExecuteError};
///
/// let e: ExecuteError<&str> = ExecuteError::Rejected("insufficient funds");
/// assert_eq!(e.to_string(), "the command was rejected: insufficient funds");
/// let e: ExecuteError<&str> = Error::Poisoned.into();
/// assert!(matches!(e, ExecuteError::Store(Error::Poisoned)));
/// ```
#[derive(Debug)]
pub enum ExecuteError<E> {
    /// `apply` aborted with this error; nothing was logged and nothing changed.
    Rejected(E),
    /// The store failed; see [`Error`].
    Store(Error),
}

impl<E> From<Error> for ExecuteError<E> {
    fn from(e: Error) -> Self {
        ExecuteError::Store(e)
    }
}

impl<E: fmt::Display> fmt::Display for ExecuteError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecuteError::Rejected(e) => write!(f, "the command was rejected: {e}"),
            ExecuteError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for ExecuteError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExecuteError::Rejected(_) => None,
            ExecuteError::Store(e) => Some(e),
        }
    }
}

/// `Result` with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
