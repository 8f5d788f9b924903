//! Wall-clock time in epoch milliseconds, the unit every store uses.

/// Now, in epoch milliseconds.
pub fn now_ms() -> crate::model::Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
