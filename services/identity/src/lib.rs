//! One identity for Parley: the same business number and the same customer
//! always normalise to the same key, whichever form they arrived in, so one
//! conversation is one key is one Connect chat.
//!
//! - A **business number** arrives as EUM's `phone-number-id-<id>`, as its
//!   ARN (`arn:aws:social-messaging:…:phone-number-id/<id>`), or as Meta's
//!   numeric phone-number id (direct Meta webhooks, the `metadata` of a
//!   webhook). The first two reduce to `phone-number-id-<id>`; a Meta id
//!   needs a [`NumberDirectory`] entry (EUM events carry one in their
//!   `context`; direct webhooks need it configured).
//! - A **customer** is a WhatsApp id (`wa_id`: country code and number,
//!   digits) or a business-scoped user id (`US.13491208655302741918`), which
//!   Meta sends instead of (or besides) the number for customers who use a
//!   username.
//!
//! Phone numbers are personal data: logs and spans use [`fingerprint`]s.
//!
//! # Layout
//! Everything is in this file: [`BusinessNumber`], [`NumberDirectory`],
//! [`CustomerId`], [`ConversationKey`], [`fingerprint`] and the one error
//! type, [`IdentityError`].

use std::{collections::HashMap, fmt};

use sha2::{Digest, Sha256};

/// Why an identity could not be normalised. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The business number is malformed.
    #[error("business_number_id: {0}")]
    InvalidBusinessNumber(String),
    /// A Meta numeric phone-number id with no known `phone-number-id-…`.
    #[error(
        "business_number_id: Meta phone-number id {0} is not mapped to an EUM phone-number-id (configure the number map)"
    )]
    UnmappedMetaId(String),
    /// The customer id is malformed.
    #[error("customer_id: {0}")]
    InvalidCustomer(String),
}

/// Result alias for identity parsing.
pub type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// Longest business number id accepted (ids are 32 hex digits in practice).
const MAX_NUMBER_ID_LEN: usize = 128;

/// A business WhatsApp number in the form the Social Messaging API takes:
/// `phone-number-id-<id>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BusinessNumber(String);

impl BusinessNumber {
    /// Normalises `phone-number-id-<id>` or its ARN. A Meta numeric id is
    /// refused with [`IdentityError::UnmappedMetaId`]: resolve those through
    /// a [`NumberDirectory`].
    pub fn parse(raw: &str) -> Result<Self> {
        let raw = raw.trim();
        let invalid = |why: &str| IdentityError::InvalidBusinessNumber(why.to_owned());
        if raw.is_empty() {
            return Err(invalid("is empty"));
        }
        if raw.len() > 512 {
            return Err(invalid("is longer than 512 characters"));
        }
        let id = if let Some(arn) = raw.strip_prefix("arn:") {
            // arn:<partition>:social-messaging:<region>:<account>:phone-number-id/<id>
            let mut parts = arn.splitn(5, ':');
            let (_partition, service) = (parts.next(), parts.next());
            if service != Some("social-messaging") {
                return Err(invalid("is an ARN but not of social-messaging"));
            }
            let resource = parts.nth(2).unwrap_or_default();
            resource
                .strip_prefix("phone-number-id/")
                .ok_or_else(|| invalid("is an ARN but not of a phone-number-id"))?
        } else if let Some(id) = raw.strip_prefix("phone-number-id-") {
            id
        } else if raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdentityError::UnmappedMetaId(raw.to_owned()));
        } else {
            return Err(invalid(
                "expected phone-number-id-…, its ARN, or a mapped Meta phone-number id",
            ));
        };
        if id.is_empty()
            || id.len() > MAX_NUMBER_ID_LEN
            || !id.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(invalid(
                "the id after phone-number-id must be 1 to 128 letters and digits",
            ));
        }
        Ok(Self(format!("phone-number-id-{id}")))
    }

    /// `phone-number-id-<id>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BusinessNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A business number is the company's, not personal data.
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BusinessNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BusinessNumber({})", self.0)
    }
}

/// Meta's numeric phone-number ids and the EUM numbers they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumberDirectory {
    by_meta_id: HashMap<String, BusinessNumber>,
}

impl NumberDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that Meta id `meta_id` is `number` (either form).
    pub fn insert(&mut self, meta_id: &str, number: &str) -> Result<()> {
        let meta_id = meta_id.trim();
        if meta_id.is_empty() || !meta_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdentityError::InvalidBusinessNumber(format!(
                "Meta phone-number id {meta_id:?} must be digits"
            )));
        }
        self.by_meta_id
            .insert(meta_id.to_owned(), BusinessNumber::parse(number)?);
        Ok(())
    }

    /// Parses `meta_id=phone-number-id-…,meta_id=arn:…` (the environment
    /// form of the map); every bad pair is reported.
    pub fn parse_pairs(text: &str) -> std::result::Result<Self, Vec<String>> {
        let mut directory = Self::new();
        let mut problems = Vec::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((meta, number)) => {
                    if let Err(e) = directory.insert(meta, number) {
                        problems.push(format!("{pair:?}: {e}"));
                    }
                }
                None => problems.push(format!("{pair:?} is not meta_id=phone-number-id-…")),
            }
        }
        if problems.is_empty() {
            Ok(directory)
        } else {
            Err(problems)
        }
    }

    /// Adds every entry of `other` (later entries win).
    pub fn extend(&mut self, other: &NumberDirectory) {
        self.by_meta_id
            .extend(other.by_meta_id.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    /// Normalises any form: `phone-number-id-…`, an ARN, or a Meta id this
    /// directory knows.
    pub fn resolve(&self, raw: &str) -> Result<BusinessNumber> {
        match BusinessNumber::parse(raw) {
            Err(IdentityError::UnmappedMetaId(id)) => self
                .by_meta_id
                .get(&id)
                .cloned()
                .ok_or(IdentityError::UnmappedMetaId(id)),
            other => other,
        }
    }

    /// How many Meta ids are known.
    pub fn len(&self) -> usize {
        self.by_meta_id.len()
    }

    /// Whether no Meta id is known.
    pub fn is_empty(&self) -> bool {
        self.by_meta_id.is_empty()
    }
}

/// A customer: a WhatsApp id or a business-scoped user id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CustomerId {
    /// `wa_id`: country code and number, digits only.
    Phone(String),
    /// A business-scoped user id, e.g. `US.13491208655302741918`.
    User(String),
}

impl CustomerId {
    /// Normalises a WhatsApp id (digits, an optional leading `+`) or a
    /// business-scoped user id (`CC.` then letters, digits, `.`, `_`, `-`).
    pub fn parse(raw: &str) -> Result<Self> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(IdentityError::InvalidCustomer("is empty".into()));
        }
        let digits = raw.strip_prefix('+').unwrap_or(raw);
        if digits.bytes().all(|b| b.is_ascii_digit()) {
            return if (6..=20).contains(&digits.len()) {
                Ok(Self::Phone(digits.to_owned()))
            } else {
                Err(IdentityError::InvalidCustomer(
                    "expected a WhatsApp id of 6 to 20 digits".into(),
                ))
            };
        }
        let bytes = raw.as_bytes();
        let well_formed = bytes.len() >= 4
            && bytes.len() <= 128
            && bytes[0].is_ascii_uppercase()
            && bytes[1].is_ascii_uppercase()
            && bytes[2] == b'.'
            && bytes[3..]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if well_formed {
            Ok(Self::User(raw.to_owned()))
        } else {
            Err(IdentityError::InvalidCustomer(
                "expected a WhatsApp id (digits) or a business-scoped user id (CC.…)".into(),
            ))
        }
    }

    /// The stored form: the digits, or the user id.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Phone(id) | Self::User(id) => id,
        }
    }

    /// The phone number (digits), when this is one.
    pub fn phone(&self) -> Option<&str> {
        match self {
            Self::Phone(id) => Some(id),
            Self::User(_) => None,
        }
    }
}

impl fmt::Debug for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomerId({})", fingerprint(self.as_str()))
    }
}

/// A conversation: one customer talking to one business number.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationKey {
    business: BusinessNumber,
    customer: CustomerId,
}

impl ConversationKey {
    /// A key from normalised parts.
    pub fn new(business: BusinessNumber, customer: CustomerId) -> Self {
        Self { business, customer }
    }

    /// Parses both parts strictly (a Meta numeric id is refused: services
    /// receive keys the gateway has already resolved).
    pub fn parse(business_number_id: &str, customer_id: &str) -> Result<Self> {
        Ok(Self::new(
            BusinessNumber::parse(business_number_id)?,
            CustomerId::parse(customer_id)?,
        ))
    }

    /// The business number.
    pub fn business(&self) -> &BusinessNumber {
        &self.business
    }

    /// The customer.
    pub fn customer(&self) -> &CustomerId {
        &self.customer
    }

    /// The storage key: unambiguous because neither part contains `#`.
    pub fn storage_id(&self) -> String {
        format!("{}#{}", self.business.as_str(), self.customer.as_str())
    }

    /// A short, stable, non-reversible tag for logs and spans.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.storage_id())
    }
}

impl fmt::Debug for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConversationKey({})", self.fingerprint())
    }
}

/// A short (12 hex digits), stable, non-reversible tag of a personal value
/// (a phone number, a conversation), for logs and span attributes: equal
/// values get equal tags, so one customer's lines can be followed without
/// the number appearing anywhere.
pub fn fingerprint(value: &str) -> String {
    let digest = Sha256::digest(format!("parley-fingerprint:{value}"));
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn every_form_of_a_business_number_is_one_key() {
        let plain = BusinessNumber::parse(&format!("phone-number-id-{HEX}")).unwrap();
        let arn = BusinessNumber::parse(&format!(
            "arn:aws:social-messaging:us-east-1:123456789012:phone-number-id/{HEX}"
        ))
        .unwrap();
        let mut directory = NumberDirectory::new();
        directory
            .insert("503650672828631", &format!("phone-number-id-{HEX}"))
            .unwrap();
        let meta = directory.resolve("503650672828631").unwrap();
        assert_eq!(plain, arn);
        assert_eq!(plain, meta);
        assert_eq!(plain.as_str(), format!("phone-number-id-{HEX}"));
        let key = |b: &BusinessNumber| {
            ConversationKey::new(b.clone(), CustomerId::parse("+14155550100").unwrap())
        };
        assert_eq!(key(&plain).storage_id(), key(&meta).storage_id());
    }

    #[test]
    fn unmapped_meta_ids_are_refused_by_name() {
        assert_eq!(
            BusinessNumber::parse("503650672828631"),
            Err(IdentityError::UnmappedMetaId("503650672828631".into()))
        );
        assert!(
            NumberDirectory::new()
                .resolve("503650672828631")
                .unwrap_err()
                .to_string()
                .contains("not mapped")
        );
    }

    #[test]
    fn malformed_business_numbers_are_rejected() {
        for raw in [
            "",
            "phone-number-id-",
            "phone-number-id-ab#cd",
            "arn:aws:sns:us-east-1:1:topic",
            "arn:aws:social-messaging:us-east-1:1:waba/abc",
            "pn#1",
        ] {
            assert!(
                matches!(
                    BusinessNumber::parse(raw),
                    Err(IdentityError::InvalidBusinessNumber(_))
                ),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn customers_are_numbers_or_user_ids() {
        assert_eq!(
            CustomerId::parse("+14155550100").unwrap(),
            CustomerId::Phone("14155550100".into())
        );
        let user = CustomerId::parse("US.26852818834383302").unwrap();
        assert_eq!(user, CustomerId::User("US.26852818834383302".into()));
        assert_eq!(user.phone(), None);
        for raw in [
            "",
            "123",
            "+1-415-555",
            "us.123",
            "US.",
            "US.12#3",
            "US 123",
        ] {
            assert!(CustomerId::parse(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn directory_pairs_report_every_problem() {
        let ok = NumberDirectory::parse_pairs(&format!(
            "111=phone-number-id-{HEX}, 222=arn:aws:social-messaging:eu-west-1:1:phone-number-id/abc"
        ))
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok.resolve("222").unwrap().as_str(), "phone-number-id-abc");
        let problems =
            NumberDirectory::parse_pairs("x=phone-number-id-a,333,444=nope").unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn fingerprints_hide_numbers_but_are_stable() {
        let key = ConversationKey::parse(&format!("phone-number-id-{HEX}"), "14155550100").unwrap();
        let again =
            ConversationKey::parse(&format!("phone-number-id-{HEX}"), "+14155550100").unwrap();
        assert_eq!(key.fingerprint(), again.fingerprint());
        assert_eq!(key.fingerprint().len(), 12);
        assert!(!format!("{key:?}").contains("14155550100"));
        assert!(!format!("{:?}", key.customer()).contains("14155550100"));
        assert_ne!(fingerprint("14155550100"), fingerprint("14155550101"));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics_and_normal_forms_are_fixed_points(raw in "\\PC{0,80}") {
            if let Ok(number) = BusinessNumber::parse(&raw) {
                proptest::prop_assert_eq!(BusinessNumber::parse(number.as_str()).unwrap(), number);
            }
            if let Ok(customer) = CustomerId::parse(&raw) {
                proptest::prop_assert!(!customer.as_str().contains('#'));
                proptest::prop_assert_eq!(CustomerId::parse(customer.as_str()).unwrap(), customer);
            }
        }
    }
}
