//! Idempotency keys. Every side effect the gateway causes carries a key
//! derived only from what it delivers — never from time or randomness — so
//! a retry after any crash repeats the same keys, and Connect (ClientToken)
//! or the WhatsApp sender (its send ledger) drops the repeat.

use sha2::{Digest, Sha256};

/// A key from its parts: 40 hex digits, within Connect's ClientToken limit
/// (500) and the sender's idempotency-key limit.
pub fn key<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(&hasher.finalize()[..20])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_unambiguous() {
        assert_eq!(key(["a", "b"]), key(["a", "b"]));
        assert_ne!(
            key(["ab", ""]),
            key(["a", "b"]),
            "parts are length-prefixed"
        );
        assert_eq!(key(["x"]).len(), 40);
    }
}
