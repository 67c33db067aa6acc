//! [`Error`]: what can go wrong with a shelf.

use std::fmt;

/// A failure of a [`Shelf`](super::Shelf) operation. Every variant names the object (its pid)
/// or the store, so that the message alone says what to look at.
///
/// Inside [`Shelf::atomically`](super::Shelf::atomically) these come back as `Err`; the
/// transaction commits nothing.
///
/// # Examples
///
/// ```
/// use stm_persist::shelf::Error;
///
/// let e = Error::NotFound { pid: "bob".into() };
/// assert_eq!(e.to_string(), "no object with pid `bob` on the shelf");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// No object has this pid (it was never created, or it was deleted).
    NotFound {
        /// The pid asked for.
        pid: String,
    },
    /// [`Shelf::create_with_id`](super::Shelf::create_with_id) named a pid that is taken.
    Exists {
        /// The pid asked for.
        pid: String,
    },
    /// The object was stored as another type than the one asked for.
    TypeMismatch {
        /// The object.
        pid: String,
        /// The type it was stored as (paths stripped: `Vec<String>`, `Account`).
        stored: String,
        /// The type asked for.
        expected: String,
    },
    /// A stored object that cannot be read: a format version this build does not know, a
    /// checksum that does not match, a body that does not deserialize as its type.
    Format {
        /// The object.
        pid: String,
        /// What is wrong.
        detail: String,
    },
    /// A value that could not be serialized; nothing was committed.
    Encode {
        /// The object.
        pid: String,
        /// What the serializer said.
        detail: String,
    },
    /// The store failed (I/O, disk full, a lost connection). After a failed write the shelf
    /// refuses further work: the transactions already committed in memory were not all
    /// stored, and reopening the shelf returns to the last stored state.
    Store(String),
    /// Another process (or another `Shelf` in this one) has the shelf open for writing.
    Locked(String),
}

/// The result type of shelf operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound { pid } => write!(f, "no object with pid `{pid}` on the shelf"),
            Error::Exists { pid } => write!(f, "an object with pid `{pid}` already exists"),
            Error::TypeMismatch {
                pid,
                stored,
                expected,
            } => write!(
                f,
                "object `{pid}` is a `{stored}`, not the `{expected}` asked for"
            ),
            Error::Format { pid, detail } => write!(f, "object `{pid}` cannot be read: {detail}"),
            Error::Encode { pid, detail } => {
                write!(f, "object `{pid}` cannot be serialized: {detail}")
            }
            Error::Store(detail) => write!(f, "the shelf's store failed: {detail}"),
            Error::Locked(detail) => write!(f, "the shelf is open elsewhere: {detail}"),
        }
    }
}

impl std::error::Error for Error {}
