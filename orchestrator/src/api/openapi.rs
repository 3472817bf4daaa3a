//! The parts of the OpenAPI document that no handler states: its title,
//! tags and the bearer scheme. The paths and schemas come from the
//! handlers' annotations as they are routed (see [`super::routes`]), so
//! the document cannot list a route the server lacks or miss one it has.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Docket",
        description = "Start cases, send them events, read and search them and their history. \
            Every request but /health, /ready and /openapi.json needs `Authorization: Bearer TOKEN`; \
            the token's role decides what it may do. Errors are `{\"error\": {\"code\", \"message\", \"field\"}}`."
    ),
    tags(
        (name = "cases", description = "Cases, their events and their history"),
        (name = "materials", description = "Files (photos, scans) uploaded for a case"),
        (name = "audit", description = "The history's hash chains verified, and the history exported"),
        (name = "health", description = "Liveness, readiness and this document"),
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
