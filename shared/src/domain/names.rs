//! The name boilerplate every state enum shares, written once: [`named_enum!`] declares the
//! enum with each variant's database (and wire) name beside it, and gives it `ALL`, `as_str`,
//! `parse`, [`FromStr`](std::str::FromStr), [`Display`](std::fmt::Display), and
//! [`ToSql`](tokio_postgres::types::ToSql)/[`FromSql`](tokio_postgres::types::FromSql) on the
//! `text` columns that store it (CHECK constraints hold them to these names, migration V8).
//!
//! Reading a state column straight into its enum (`row.try_get::<_, ContactState>("state")`)
//! means a name the enum does not know is an error at the row, never a string carried on.

/// A name that is not one of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a {of} name")]
pub struct UnknownName {
    /// The enum it was parsed as (e.g. `ContactState`).
    pub of: &'static str,
    /// What was read.
    pub name: String,
}

/// Declares an enum whose variants each carry their name (`Variant = "name"`), with `ALL`
/// (in declaration order), `as_str`, `parse`, `FromStr`, `Display`, `ToSql` and `FromSql`
/// (text, varchar and the other string types PostgreSQL has).
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $text:literal
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $(
                $(#[$vmeta])*
                $variant,
            )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$($text),+].len()] = [$(Self::$variant),+];

            /// The database and wire name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// Parses the database name (exact spelling).
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::domain::names::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s).ok_or_else(|| $crate::domain::names::UnknownName {
                    of: stringify!($name),
                    name: s.to_owned(),
                })
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::tokio_postgres::types::ToSql for $name {
            fn to_sql(
                &self,
                ty: &::tokio_postgres::types::Type,
                out: &mut ::tokio_postgres::types::private::BytesMut,
            ) -> Result<
                ::tokio_postgres::types::IsNull,
                Box<dyn ::std::error::Error + Sync + Send>,
            > {
                <&str as ::tokio_postgres::types::ToSql>::to_sql(&self.as_str(), ty, out)
            }

            fn accepts(ty: &::tokio_postgres::types::Type) -> bool {
                <&str as ::tokio_postgres::types::ToSql>::accepts(ty)
            }

            ::tokio_postgres::types::to_sql_checked!();
        }

        impl<'a> ::tokio_postgres::types::FromSql<'a> for $name {
            fn from_sql(
                ty: &::tokio_postgres::types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn ::std::error::Error + Sync + Send>> {
                let s = <&str as ::tokio_postgres::types::FromSql>::from_sql(ty, raw)?;
                Ok(s.parse::<$name>()?)
            }

            fn accepts(ty: &::tokio_postgres::types::Type) -> bool {
                <&str as ::tokio_postgres::types::FromSql>::accepts(ty)
            }
        }
    };
}

pub(crate) use named_enum;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::domain::{
        AttemptState, CallOutcome, ContactState, IngestState, JobState, MachineDetection, Surface,
    };

    /// `as_str`, `parse`, `FromStr` and `Display` agree for every value of `T`, and `parse`
    /// accepts nothing but those names.
    fn check_names<T>(all: &[T], as_str: fn(T) -> &'static str, parse: fn(&str) -> Option<T>)
    where
        T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display + std::str::FromStr,
        <T as std::str::FromStr>::Err: std::fmt::Debug,
    {
        for &v in all {
            assert_eq!(parse(as_str(v)), Some(v));
            assert_eq!(as_str(v).parse::<T>().unwrap(), v);
            assert_eq!(v.to_string(), as_str(v));
        }
        let mut names: Vec<_> = all.iter().map(|&v| as_str(v)).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len(), "names are distinct");
    }

    #[test]
    fn every_enum_round_trips_its_names() {
        check_names(
            &ContactState::ALL,
            ContactState::as_str,
            ContactState::parse,
        );
        check_names(&JobState::ALL, JobState::as_str, JobState::parse);
        check_names(&IngestState::ALL, IngestState::as_str, IngestState::parse);
        check_names(
            &AttemptState::ALL,
            AttemptState::as_str,
            AttemptState::parse,
        );
        check_names(&CallOutcome::ALL, CallOutcome::as_str, CallOutcome::parse);
        check_names(&Surface::ALL, Surface::as_str, Surface::parse);
        check_names(
            &MachineDetection::ALL,
            MachineDetection::as_str,
            MachineDetection::parse,
        );
    }

    #[test]
    fn an_unknown_name_says_which_enum() {
        let e = "canceled".parse::<ContactState>().unwrap_err();
        assert_eq!(e.of, "ContactState");
        assert_eq!(e.to_string(), "\"canceled\" is not a ContactState name");
    }

    proptest! {
        /// Whatever a column could hold, `parse` takes exactly the names and gives them back.
        #[test]
        fn parse_takes_only_names(s in "[a-zA-Z_-]{0,12}") {
            if let Some(v) = ContactState::parse(&s) { prop_assert_eq!(v.as_str(), s.as_str()); }
            if let Some(v) = JobState::parse(&s) { prop_assert_eq!(v.as_str(), s.as_str()); }
            if let Some(v) = AttemptState::parse(&s) { prop_assert_eq!(v.as_str(), s.as_str()); }
            if let Some(v) = CallOutcome::parse(&s) { prop_assert_eq!(v.as_str(), s.as_str()); }
        }
    }
}
