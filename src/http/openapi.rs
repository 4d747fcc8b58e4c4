//! The OpenAPI document's shared parts: its header, the bearer scheme, and
//! the answers every route of a kind can give (a refused token, a
//! throttled address, a malformed query or JSON body). Those are documented
//! here once, from what each operation declares, rather than on each
//! route, so a new route cannot forget them.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Relay",
        description = "Store-and-forward imaging for asynchronous teleconsultation. \
            Every error answers `{\"error\": code, \"message\": text}`.",
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "cases", description = "Consult cases, scoped to the caller's office or specialty"),
        (name = "consult", description = "Worklists, claims, reports, information requests, acknowledgement"),
        (name = "images", description = "Photos and DICOM attached to cases, stored by sha256"),
        (name = "audit", description = "The tamper-evident audit trail (administrators)"),
        (name = "admin", description = "Operating Relay: the job queue (administrators)"),
        (name = "accounts", description = "The signed-in account"),
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "dicomweb", description = "DICOMweb (PS3.18): STOW-RS, QIDO-RS, WADO-RS, scoped like every route"),
    )
)]
pub(super) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Documents on every operation the answers its kind can give, unless the
/// operation documents that status itself.
pub(super) fn add_shared_answers(api: &mut utoipa::openapi::OpenApi) {
    for item in api.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            shared_answers(operation);
        }
    }
}

fn shared_answers(operation: &mut Operation) {
    let protected = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_query = operation.parameters.iter().flatten().any(|p| match p {
        RefOr::T(p) => p.parameter_in == ParameterIn::Query,
        RefOr::Ref(_) => false,
    });
    let json_body = match &operation.request_body {
        Some(RefOr::T(body)) => body.content.contains_key("application/json"),
        _ => false,
    };
    if protected {
        error(
            operation,
            401,
            "No valid token: missing, invalid, expired or revoked",
        );
        error(
            operation,
            429,
            "This address failed to authenticate too often; Retry-After says when to try again",
        );
    }
    if has_query {
        error(operation, 400, "A query parameter is unknown or invalid");
    }
    if json_body {
        error(operation, 400, "The body is not well-formed JSON");
        error(operation, 413, "The body is larger than 1 MiB");
        error(operation, 415, "The body is not sent as application/json");
        error(
            operation,
            422,
            "A field is unknown, missing or invalid; `field` names it",
        );
    }
}

/// Documents `status` with an `ErrorBody`, unless it is documented already.
fn error(operation: &mut Operation, status: u16, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                    )
                    .build(),
            )
        });
}

/// The bytes of a request or response body that is not JSON (an image, a
/// DICOM file, a tus chunk): `type: string, format: binary`. (`Vec<u8>`
/// would be documented as an array of integers.)
pub(crate) struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl utoipa::ToSchema for Binary {}

/// A `multipart/form-data` upload of images: every part with a file name
/// is one, its `Content-Type` (`image/jpeg`, `image/png`,
/// `application/dicom`) saying which; parts without a file name are
/// ignored.
pub(crate) struct UploadForm;

impl utoipa::PartialSchema for UploadForm {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(Binary::schema()))
            .into()
    }
}

impl utoipa::ToSchema for UploadForm {}
