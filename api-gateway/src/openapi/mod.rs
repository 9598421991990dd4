//! The OpenAPI 3.1 document, served at `/openapi.json`. Nothing here describes a body by hand:
//! the paths come from the `#[utoipa::path]` annotations on the handlers, and every schema is
//! derived from the type the handler reads or returns, so the document cannot drift from the
//! API. What this module adds is what no single handler states:
//!
//! - the error answers every route shares ([`CommonErrors`]): 401, 429 and 503 everywhere, 400 where
//!   a query or body is parsed, 404 where a path names a resource, 413 where a body is read —
//!   all in the one [`ErrorBody`] shape;
//! - the bodies the gateway parses as streams rather than through a type: the CSV uploads and
//!   the row lists of the append routes, and the `Idempotency-Key` header ([`schemas`], which the
//!   handlers' annotations name, so it imports no route);
//! - the auth schemes.

pub mod schemas;

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::batches::body::{DialgenContact, VogentRow};
use crate::batches::settings::{DialgenCreate, VogentCreate};
use crate::error::ErrorBody;
use crate::routes::{
    agents, compliance, dashboard_links, dialgen, lists, phone_numbers, preflight, vogent,
    webhook_deliveries, workspace,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "dialfleet", description = "Vogent Batch Dial Jobs and Dialgen Call Batches on one self-hosted dialer."),
    paths(
        agents::create, agents::list, agents::fetch, agents::remove,
        phone_numbers::create, phone_numbers::list, phone_numbers::remove,
        vogent::create, vogent::list, vogent::fetch, vogent::update, vogent::set_paused, vogent::cancel,
        vogent::queue, vogent::dials, vogent::dial,
        dialgen::create, dialgen::list, dialgen::check_status, dialgen::status_link, dialgen::calls,
        dialgen::pause, dialgen::resume, dialgen::cancel,
        dashboard_links::dialgen, dashboard_links::vogent,
        preflight::dialgen_preflight, preflight::vogent_preflight,
        webhook_deliveries::list, webhook_deliveries::fetch, webhook_deliveries::retry,
        workspace::fetch, workspace::update, workspace::rotate_secret, workspace::dashboard_link,
        compliance::add, compliance::list, compliance::remove, compliance::opt_out, compliance::events,
        lists::dialgen_rejected, lists::vogent_rejected, lists::dialgen_results, lists::vogent_results,
        lists::dialgen_retry, lists::vogent_retry, lists::dialgen_contacts, lists::vogent_rows,
    ),
    components(schemas(ErrorBody, VogentRow, DialgenContact, VogentCreate, DialgenCreate)),
    modifiers(&Security, &CommonErrors),
    security(("bearer" = []), ("api_key" = [])),
    tags((name = "agents"), (name = "phone numbers"), (name = "vogent"), (name = "dialgen"), (name = "webhooks"), (name = "workspace"), (name = "compliance")),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("api_key"))),
        );
    }
}

/// The answers every route gives for the same reasons, whatever it does: added to each
/// operation that does not state them itself, as the extractors and the auth guard produce them.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add_common_errors(op);
            }
        }
    }
}

fn add_common_errors(op: &mut Operation) {
    let params = op.parameters.as_deref().unwrap_or_default();
    let has = |place: ParameterIn| params.iter().any(|p| p.parameter_in == place);
    let (query, path) = (has(ParameterIn::Query), has(ParameterIn::Path));
    let body = op.request_body.is_some();
    let mut errors = vec![
        ("401", "no valid API key"),
        (
            "429",
            "the workspace's request rate is spent (requestsPerSecond, requestBurst); retry after the Retry-After header's seconds",
        ),
        (
            "503",
            "a dependency (database, broker) is unavailable; nothing changed, retry",
        ),
    ];
    if query || body {
        errors.push((
            "400",
            "malformed JSON, a wrong type, a NUL character, or a cursor this API did not return",
        ));
    }
    if path {
        errors.push((
            "404",
            "not found in this workspace (an id that is not a UUID names nothing)",
        ));
    }
    if body {
        errors.push(("413", "the body is larger than the limit"));
    }
    for (status, description) in errors {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error_response(description));
    }
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .build()
        .into()
}

/// `GET /openapi.json`.
pub async fn serve() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
