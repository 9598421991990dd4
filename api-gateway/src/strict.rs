//! Strict reading of JSON bodies: one mechanism for every body, whole or streamed.
//!
//! [`Strict`] wraps any serde `Deserializer` and watches what the target type asks for. Where it
//! asks for a struct, serde hands over the struct's field names, so a key that is none of them is
//! an *unknown field*: recorded with its path (and a "did you mean" when a known field is one
//! edit away) and skipped, so that the parse goes on and every one is named. Every object,
//! free-form ones (`metadata`, `inputs`) included, is checked for a *duplicated key*, which is
//! recorded rather than merged or overwritten. Nothing is buffered: the wrapper sees one key at a
//! time, so a streamed body of 100,000 contacts is checked in the memory of one row.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, IntoDeserializer, MapAccess,
    SeqAccess, Visitor,
};

use crate::error::{FieldError, Problem};

/// The problems found so far; shared by every level of one parse.
#[derive(Debug, Default)]
pub struct Findings(RefCell<Vec<FieldError>>);

impl Findings {
    /// Takes what was found, leaving nothing.
    pub fn take(&self) -> Vec<FieldError> {
        std::mem::take(&mut *self.0.borrow_mut())
    }

    /// Whether something was found.
    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }

    fn unknown(&self, path: &str, key: &str, known: &[&str]) {
        let mut message = format!("unknown field `{key}`");
        if let Some(near) = did_you_mean(key, known) {
            message.push_str(&format!(", did you mean `{near}`?"));
        }
        self.push(FieldError::new(path, message).problem(Problem::UnknownField));
    }

    fn duplicate(&self, path: &str, key: &str) {
        self.push(
            FieldError::new(
                path,
                format!("the key `{key}` appears more than once in this object"),
            )
            .problem(Problem::DuplicateKey),
        );
    }

    fn push(&self, e: FieldError) {
        let mut found = self.0.borrow_mut();
        if found.len() < crate::error::MAX_DETAILS {
            found.push(e);
        }
    }
}

/// The known field one edit away from `key` (Damerau-Levenshtein distance 1), or spelled the
/// same but for case and `_`/`-` (`retry_strategy` for `retryStrategy`).
pub fn did_you_mean<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let folded = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    known
        .iter()
        .find(|k| strsim::damerau_levenshtein(key, k) == 1)
        .or_else(|| known.iter().find(|k| folded(k) == folded(key)))
        .copied()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Deserializes `T` from `de` strictly, rooted at `path` (`""` for a whole body,
/// `contacts[3]` for one streamed row): unknown fields and duplicated keys go to `findings`.
pub fn deserialize<'de, T: de::Deserialize<'de>, D: Deserializer<'de>>(
    de: D,
    path: &str,
    findings: &Findings,
) -> Result<T, D::Error> {
    T::deserialize(Strict {
        de,
        path: path.to_owned(),
        findings,
    })
}

/// A `Deserializer` that checks every object it passes through (see the module).
pub struct Strict<'f, D> {
    de: D,
    path: String,
    findings: &'f Findings,
}

impl<'f, D> Strict<'f, D> {
    /// Wraps `de`, whose value sits at `path`.
    pub fn new(de: D, path: impl Into<String>, findings: &'f Findings) -> Self {
        Self {
            de,
            path: path.into(),
            findings,
        }
    }

    fn wrap<V>(&self, visitor: V, fields: Option<&'static [&'static str]>) -> Wrap<'f, V> {
        Wrap {
            visitor,
            path: self.path.clone(),
            findings: self.findings,
            fields,
        }
    }
}

macro_rules! forward {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            let wrapped = self.wrap(visitor, None);
            self.de.$method(wrapped)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<'_, D> {
    type Error = D::Error;

    forward! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let wrapped = self.wrap(visitor, None);
        self.de.deserialize_unit_struct(name, wrapped)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let wrapped = self.wrap(visitor, None);
        self.de.deserialize_newtype_struct(name, wrapped)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let wrapped = self.wrap(visitor, None);
        self.de.deserialize_tuple(len, wrapped)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let wrapped = self.wrap(visitor, None);
        self.de.deserialize_tuple_struct(name, len, wrapped)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let wrapped = self.wrap(visitor, Some(fields));
        self.de.deserialize_struct(name, fields, wrapped)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        // Enums in bodies are strings (or absent); their content is the enum's own business.
        self.de.deserialize_enum(name, variants, visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// A visitor that wraps the maps and sequences it is given.
struct Wrap<'f, V> {
    visitor: V,
    path: String,
    findings: &'f Findings,
    fields: Option<&'static [&'static str]>,
}

macro_rules! pass {
    ($($method:ident: $ty:ty)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.visitor.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.visitor.expecting(f)
    }

    pass! {
        visit_bool: bool visit_i8: i8 visit_i16: i16 visit_i32: i32 visit_i64: i64
        visit_i128: i128 visit_u8: u8 visit_u16: u16 visit_u32: u32 visit_u64: u64
        visit_u128: u128 visit_f32: f32 visit_f64: f64 visit_char: char visit_str: &str
        visit_string: String visit_bytes: &[u8] visit_byte_buf: Vec<u8>
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        self.visitor.visit_borrowed_str(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
        self.visitor.visit_borrowed_bytes(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.visitor
            .visit_some(Strict::new(d, self.path, self.findings))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.visitor
            .visit_newtype_struct(Strict::new(d, self.path, self.findings))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.visitor.visit_seq(StrictSeq {
            seq,
            path: self.path,
            index: 0,
            findings: self.findings,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.visitor.visit_map(StrictMap {
            map,
            path: self.path,
            findings: self.findings,
            fields: self.fields,
            seen: HashSet::new(),
            current: String::new(),
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.visitor.visit_enum(data)
    }
}

/// A seed whose value is read strictly at `path`.
struct StrictSeed<'f, S> {
    seed: S,
    path: String,
    findings: &'f Findings,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for StrictSeed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.seed
            .deserialize(Strict::new(d, self.path, self.findings))
    }
}

struct StrictSeq<'f, A> {
    seq: A,
    path: String,
    index: usize,
    findings: &'f Findings,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for StrictSeq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        self.seq.next_element_seed(StrictSeed {
            seed,
            path,
            findings: self.findings,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

struct StrictMap<'f, A> {
    map: A,
    path: String,
    findings: &'f Findings,
    /// The struct's fields; `None` for a free-form object.
    fields: Option<&'static [&'static str]>,
    seen: HashSet<String>,
    /// The path of the key just handed out.
    current: String,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for StrictMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            // JSON keys are strings: read it as one, judge it, then hand it to the target.
            let Some(key) = self.map.next_key::<String>()? else {
                return Ok(None);
            };
            let path = join(&self.path, &key);
            if self.seen.contains(&key) {
                self.findings.duplicate(&path, &key);
                self.map.next_value::<IgnoredAny>()?;
                continue;
            }
            if let Some(fields) = self.fields
                && !fields.contains(&key.as_str())
            {
                self.findings.unknown(&path, &key, fields);
                self.seen.insert(key);
                self.map.next_value::<IgnoredAny>()?;
                continue;
            }
            self.current = path;
            let value = seed.deserialize(key.clone().into_deserializer())?;
            self.seen.insert(key);
            return Ok(Some(value));
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.map.next_value_seed(StrictSeed {
            seed,
            path: std::mem::take(&mut self.current),
            findings: self.findings,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// Reads a JSON value strictly into a `serde_json::Value` (every object checked for duplicated
/// keys): for the parts of a streamed body kept whole until the end.
pub struct Checked<'f> {
    /// Where the value sits.
    pub path: String,
    /// Where problems go.
    pub findings: &'f Findings,
}

impl<'de> DeserializeSeed<'de> for Checked<'_> {
    type Value = serde_json::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        deserialize(d, &self.path, self.findings)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::Value;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Options {
        scheduled_start_time: Option<String>,
        max_calls_per_second: Option<i64>,
        retry_strategy: Option<Value>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Contact {
        name: Option<String>,
        metadata: Option<Value>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        options: Option<Options>,
        contacts: Vec<Contact>,
    }

    fn check(json: &str) -> (Option<Body>, Vec<FieldError>) {
        let findings = Findings::default();
        let mut de = serde_json::Deserializer::from_str(json);
        let body = deserialize::<Body, _>(&mut de, "", &findings).ok();
        (body, findings.take())
    }

    #[test]
    fn names_every_unknown_field_by_its_path() {
        let (body, found) = check(
            r#"{"options":{"sheduledStartTime":"x","maxCallPerSecond":3,"retry_strategy":{}},
                "contacts":[{"name":"a"},{"name":"b"},{"nmae":"c"}],"extra":1}"#,
        );
        assert!(body.is_some(), "the parse goes on past unknown fields");
        let fields: Vec<_> = found.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "options.sheduledStartTime",
                "options.maxCallPerSecond",
                "options.retry_strategy",
                "contacts[2].nmae",
                "extra"
            ]
        );
        assert!(
            found[0]
                .message
                .contains("did you mean `scheduledStartTime`?")
        );
        assert!(
            found[1]
                .message
                .contains("did you mean `maxCallsPerSecond`?")
        );
        assert!(found[2].message.contains("did you mean `retryStrategy`?"));
        assert!(found[3].message.contains("did you mean `name`?"));
        assert!(!found[4].message.contains("did you mean"));
        assert!(found.iter().all(|f| f.problem == Problem::UnknownField));
    }

    #[test]
    fn duplicated_keys_anywhere_are_named_never_merged() {
        let (_, found) = check(
            r#"{"contacts":[{"name":"a","metadata":{"k":1,"k":2}}],"contacts":[{"name":"b"}],
                "options":{"maxCallsPerSecond":1,"maxCallsPerSecond":2}}"#,
        );
        let fields: Vec<_> = found.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "contacts[0].metadata.k",
                "contacts",
                "options.maxCallsPerSecond"
            ]
        );
        assert!(found.iter().all(|f| f.problem == Problem::DuplicateKey));
    }

    #[test]
    fn a_clean_body_finds_nothing() {
        let (body, found) =
            check(r#"{"options":{"maxCallsPerSecond":1},"contacts":[{"metadata":{"a":{"b":1}}}]}"#);
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(body.unwrap().options.unwrap().max_calls_per_second, Some(1));
    }
}
