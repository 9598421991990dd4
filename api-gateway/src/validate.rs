//! Collects every semantic error of a request (up to a limit) so one 422 names them all, and
//! [`Text`], the string type of every request field that is stored as it is.

use serde::{Deserialize, Deserializer};

use crate::error::{ApiError, FieldError, MAX_DETAILS};

/// A request string that PostgreSQL can store as it is: it holds no NUL character (`\u0000`),
/// which `text` and `jsonb` both refuse. Checked while the request is deserialized, so a NUL is
/// a 400 that names the field (the body and query extractors report the path), never a 500 from
/// the database. Every field stored verbatim (names, labels, user ids, tags, URLs) has this type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Text(String);

/// Why a [`Text`] was refused.
pub const NUL_MESSAGE: &str = "must not contain a NUL character (\\u0000)";

impl Text {
    /// The string, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.0
    }
}

/// A string in the document, as on the wire.
impl utoipa::PartialSchema for Text {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        String::schema()
    }
}

impl utoipa::ToSchema for Text {}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.contains('\0') {
            return Err(serde::de::Error::custom(NUL_MESSAGE));
        }
        Ok(Self(s))
    }
}

/// Field errors found so far.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    /// Records that `field` is wrong (beyond [`MAX_DETAILS`] they are counted but not kept).
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        if self.0.len() < MAX_DETAILS {
            self.0.push(FieldError::new(field, message));
        }
    }

    /// Records problems found elsewhere (a strict parse's unknown fields and duplicated keys).
    pub fn extend(&mut self, errors: impl IntoIterator<Item = FieldError>) {
        for e in errors {
            if self.0.len() < MAX_DETAILS {
                self.0.push(e);
            }
        }
    }

    /// Whether an unknown field or a duplicated key was found: then a type error found later
    /// (a misspelled required field is also a missing one) joins them in one 422.
    pub fn has_strict_findings(&self) -> bool {
        self.0
            .iter()
            .any(|e| e.problem != crate::error::Problem::Invalid)
    }

    /// Everything found.
    pub fn into_details(self) -> Vec<FieldError> {
        self.0
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` if nothing was found, else a 422 listing everything.
    pub fn into_result<T>(self, value: T) -> Result<T, ApiError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

/// Checks a URL the fleet or its carrier will call (`shared::destination::parse_http_url`,
/// the parse the HTTP client makes): `Err` is the message for the field.
pub fn http_url(url: &str) -> Result<(), String> {
    shared::destination::parse_http_url(url)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The longest name (a batch's, a job's, a contact's, a `userId`), in characters; the same on
/// both APIs.
pub const MAX_NAME_CHARS: usize = 500;
/// The longest contact `company`, in characters.
pub const MAX_COMPANY_CHARS: usize = 500;
/// The longest email address (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// The largest `metadata` (Dialgen) or `inputs` (Vogent, and a CSV's extra columns) of one
/// contact, in bytes of compact JSON.
pub const MAX_ROW_DATA_BYTES: usize = 16 * 1024;

/// Checks a name's length at `field` (trimmed, in characters).
pub fn check_name(name: &str, field: &str, v: &mut Violations) {
    if name.trim().chars().count() > MAX_NAME_CHARS {
        v.add(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters"),
        );
    }
}

/// The size of `value` as compact JSON, counted without building it.
pub fn json_size(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, and JSON values always serialize.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// An email address as Dialgen's documentation asks ("a valid address"): one `@`; a local part
/// of 1 to 64 characters, none of them a space, a control or `"(),:;<>[\]`, no leading,
/// trailing or doubled dot; a domain of dot-separated labels of letters, digits and inner
/// hyphens, the last of two letters or more; at most 254 characters in all.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = (1..=64).contains(&local.len())
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"\"(),:;<>@[\\]".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic));
    s.chars().count() <= MAX_EMAIL_CHARS && local_ok && domain_ok
}

/// For a field that may be `null` on purpose (`#[serde(default, deserialize_with =
/// "crate::validate::present")]`): absent is `None`, `null` is `Some(None)` (turn it off).
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_refuses_nul() {
        assert_eq!(&*serde_json::from_str::<Text>(r#""Jane""#).unwrap(), "Jane");
        let err = serde_json::from_str::<Text>(r#""Ja\u0000ne""#).unwrap_err();
        assert!(err.to_string().contains("NUL"), "{err}");
    }

    #[test]
    fn urls_and_emails() {
        assert!(http_url("https://api.example.com/hook").is_ok());
        assert!(http_url("ftp://x").is_err());
        assert!(http_url("https://").is_err());
        assert!(http_url("http://[").is_err());
        assert!(http_url("https://\u{1}x\"]<>\u{9d}").is_err());
        assert!(is_email("jane@example.com"));
        assert!(!is_email("jane@example"));
        assert!(!is_email("jane example@x.com"));
        assert!(is_email("jane.o'hara+tag@mail.example.co.uk"));
        for bad in [
            "a@b.c",
            "a@-b.com",
            "a..b@x.com",
            ".a@x.com",
            "a@x..com",
            "a@x.c0m",
            "a<b@x.com",
            "a@b@c.com",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
        assert!(!is_email(&format!("{}@x.com", "a".repeat(65))));
    }
}
