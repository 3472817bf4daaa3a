//! Bearer tokens and what each role may do.
//!
//! A token is 256 random bits shown once when it is created; the database
//! keeps only its SHA-256, so a copy of the database grants nothing. Each
//! request names its token's holder in the history as `token:NAME`.

use std::fmt;
use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;

/// What a token's holder is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The public front end: starts cases, reads the cases it knows by id,
    /// sends the applicant events (`--gateway-event`).
    Gateway,
    /// Case officers: any event (approvals, rejections), deadline
    /// extensions, reading and searching cases and their history.
    Officer,
    /// Running the system: cancelling cases and retrying failed steps,
    /// reading and searching cases and their history.
    Operator,
    /// Read-only: cases, searches and history; verifying and exporting
    /// the history.
    Auditor,
    /// Everything.
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Gateway,
        Role::Officer,
        Role::Operator,
        Role::Auditor,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Officer => "officer",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// Whether the role may do `action` at all. Sending an event is further
    /// limited for the gateway ([`Caller::may_send`]).
    pub fn may(self, action: Action) -> bool {
        PERMISSIONS
            .iter()
            .any(|(a, roles)| *a == action && roles.contains(&self))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a role (gateway, officer, operator, auditor, admin)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Something a request does, checked against [`PERMISSIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    StartCase,
    SendEvent,
    ReadCase,
    ListCases,
    ReadHistory,
    Cancel,
    Retry,
    ExtendDeadline,
    /// Seeing names, ID numbers, phones and addresses in clear; everyone
    /// else sees them masked.
    SeePersonalData,
    /// Recomputing the history's hash chains.
    VerifyAudit,
    /// Exporting the history of a period, every case's.
    ExportAudit,
    /// Uploading a file (a photo, a scan) for a case.
    UploadMaterial,
    /// Listing a case's uploaded files: kinds, types, sizes, hashes.
    ListMaterials,
    /// Reading an uploaded file's content: personal data.
    ReadMaterial,
}

/// Who may do what: one row per action, every role named. The operator
/// runs the machinery (cancel, retry) but takes no decision on a case
/// (events, extensions are the officers'); the gateway never lists or
/// reads history, so a leaked front-end token cannot browse cases.
pub const PERMISSIONS: [(Action, &[Role]); 14] = {
    use Role::{Admin, Auditor, Gateway, Officer, Operator};
    [
        (Action::StartCase, &[Gateway, Admin]),
        (Action::SendEvent, &[Gateway, Officer, Admin]),
        (
            Action::ReadCase,
            &[Gateway, Officer, Operator, Auditor, Admin],
        ),
        (Action::ListCases, &[Officer, Operator, Auditor, Admin]),
        (Action::ReadHistory, &[Officer, Operator, Auditor, Admin]),
        (Action::Cancel, &[Operator, Admin]),
        (Action::Retry, &[Operator, Admin]),
        (Action::ExtendDeadline, &[Officer, Admin]),
        (Action::SeePersonalData, &[Officer, Admin]),
        (Action::VerifyAudit, &[Auditor, Admin]),
        (Action::ExportAudit, &[Auditor, Admin]),
        (Action::UploadMaterial, &[Gateway, Officer, Admin]),
        (
            Action::ListMaterials,
            &[Gateway, Officer, Operator, Auditor, Admin],
        ),
        (Action::ReadMaterial, &[Officer, Admin]),
    ]
};

/// A new token's text: 256 bits from the operating system's random
/// source (each v4 UUID carries 122), with a prefix that makes a leaked
/// token easy to recognise in a scan.
pub fn new_token() -> String {
    format!(
        "docket_{}{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// What the database keeps of a token: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The holder of the request's token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// The actor recorded in history for this caller's changes.
    pub fn actor(&self) -> String {
        format!("token:{}", self.name)
    }

    /// Whether personal data is shown to this caller in clear.
    pub fn sees_personal_data(&self) -> bool {
        self.role.may(Action::SeePersonalData)
    }

    pub fn require(&self, action: Action) -> Result<(), ApiError> {
        if self.role.may(action) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "a {} token may not do this",
                self.role
            )))
        }
    }

    /// The gateway sends only the events the configuration names as the
    /// applicant's; every other role that may send events sends any.
    pub fn may_send(&self, event: &str, gateway_events: &[String]) -> Result<(), ApiError> {
        self.require(Action::SendEvent)?;
        if self.role == Role::Gateway && !gateway_events.iter().any(|e| e == event) {
            return Err(ApiError::forbidden(format!(
                "a gateway token may not send `{event}`: it is not one of the applicant events this server is configured with"
            )));
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("an `Authorization: Bearer TOKEN` header is required")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the `Authorization` header must be `Bearer TOKEN`")
            })?;
        let record = state
            .backend
            .token_by_hash(token_hash(token))
            .await?
            .ok_or_else(|| ApiError::unauthorized("the token is unknown or revoked"))?;
        let role = record
            .role
            .parse::<Role>()
            .map_err(|e| ApiError::internal("a stored token has an unknown role", &e))?;
        Ok(Caller {
            name: record.name,
            role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::{Admin, Auditor, Gateway, Officer, Operator};

    #[test]
    fn every_action_has_one_row_and_admin_may_do_all() {
        for (action, roles) in PERMISSIONS {
            assert_eq!(PERMISSIONS.iter().filter(|(a, _)| *a == action).count(), 1);
            assert!(roles.contains(&Admin), "{action:?}");
        }
        assert!(!Auditor.may(Action::SendEvent));
        assert!(!Operator.may(Action::ExtendDeadline));
        assert!(Auditor.may(Action::ExportAudit));
        assert!(!Officer.may(Action::VerifyAudit));
    }

    #[test]
    fn the_gateway_sends_only_the_configured_events() {
        let caller = Caller {
            name: "front".into(),
            role: Gateway,
        };
        let configured = vec!["materials_submitted".to_owned()];
        assert!(caller.may_send("materials_submitted", &configured).is_ok());
        assert!(
            caller
                .may_send("application_accepted", &configured)
                .is_err()
        );
        let officer = Caller {
            name: "desk".into(),
            role: Officer,
        };
        assert!(
            officer
                .may_send("application_accepted", &configured)
                .is_ok()
        );
    }

    #[test]
    fn tokens_are_long_random_and_stored_as_digests() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.len() > 64);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
        assert_eq!("auditor".parse(), Ok(Auditor));
    }
}
