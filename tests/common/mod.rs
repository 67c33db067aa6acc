//! Helpers shared by the integration tests.

/// The message of a caught panic (`&str` or `String` payloads).
pub(crate) fn panic_message(err: Box<dyn std::any::Any + Send>) -> String {
    err.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}
