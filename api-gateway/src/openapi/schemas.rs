//! The parts of the OpenAPI document built by hand, which the handlers' `#[utoipa::path]`
//! annotations name: the bodies the gateway parses as streams rather than through a type (the
//! CSV uploads, the row lists of the append routes) and the `Idempotency-Key` header. Apart from
//! the document itself (`super`), which lists the handlers, so that no route imports it.

use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr, Required};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::batches::body::{DialgenContact, VogentRow};
use crate::batches::settings::{DialgenCreate, VogentCreate};

/// The `Idempotency-Key` header of the create routes: a replay with the same key and body
/// answers the first request's batch; the same key with another body is a 422.
pub struct IdempotencyKey;

impl IntoParams for IdempotencyKey {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        // `submit::idempotency_key`: 1 to 255 visible ASCII characters, trimmed.
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(255))
            .pattern(Some("^[\\x21-\\x7e]([\\x20-\\x7e]*[\\x21-\\x7e])?$"));
        vec![
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "a replay (same key, same body) answers the first request's batch",
                ))
                .schema(Some(schema))
                .build(),
        ]
    }
}

/// A CSV upload (`multipart/form-data`): part `file` holds the rows as CSV, part `settings`
/// the create body's other fields as JSON (`crate::batches::csv`).
fn upload(settings: &str, settings_schema: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .property(
            "file",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("text/csv")
                .description(Some(
                    "the CSV: a header line naming the columns, then one row per line",
                )),
        )
        .property(settings, Ref::from_schema_name(settings_schema))
        .required("file")
        .required(settings)
        .into()
}

/// The body of an append route: `{"<key>": [rows]}`, 1 to 100,000 rows, nothing else
/// (`crate::batches::append`).
fn rows_body(key: &str, row_schema: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .property(
            key,
            ArrayBuilder::new()
                .items(Ref::from_schema_name(row_schema))
                .min_items(Some(1))
                .max_items(Some(100_000)),
        )
        .required(key)
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ))
        .into()
}

/// A schema the document names, built by a function rather than derived: for the bodies the
/// gateway parses as streams, which no Rust type holds whole.
macro_rules! built_schema {
    ($(#[$doc:meta])* $name:ident => $build:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $build
            }
        }

        impl ToSchema for $name {}
    };
}

built_schema! {
    /// `POST /api/batch_dial_jobs` as an upload: parts `file` and `job`.
    VogentUpload => upload("job", VogentCreate::name().as_ref())
}

built_schema! {
    /// `POST /api/v1/batch` as an upload: parts `file` and `batch`.
    DialgenUpload => upload("batch", DialgenCreate::name().as_ref())
}

built_schema! {
    /// `POST /api/batch_dial_jobs/{id}/rows`: rows as in the create body.
    AppendRows => rows_body("rows", VogentRow::name().as_ref())
}

built_schema! {
    /// `POST /api/v1/batch/{id}/contacts`: contacts as in the create body.
    AppendContacts => rows_body("contacts", DialgenContact::name().as_ref())
}
