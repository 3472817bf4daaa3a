//! What the handlers need from the orchestrator and its store, behind one
//! object-safe trait: the handlers stay free of the store's type, which
//! keeps them plain functions the OpenAPI macros can read.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use super::materials::MaterialBackend;
use crate::engine::{CaseState, Command, Data};
use crate::runtime::{Orchestrator, RuntimeError};
use crate::store::api::{ApiStore, CaseSearch, KeyClaim, TokenRecord};
use crate::store::audit::{self, AuditStore, ExportedEvent, Verification};
use crate::store::materials::MaterialStore;
use crate::store::{CaseSummary, HistoryRecord, Lock, Store, StoreError, Updated};

pub trait Backend: MaterialBackend + Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    fn start<'a>(
        &'a self,
        workflow: &'a str,
        input: Data,
        actor: &'a str,
    ) -> BoxFuture<'a, Result<CaseState, RuntimeError>>;

    /// Applies a command and returns the case as it is afterwards.
    fn apply<'a>(
        &'a self,
        case_id: &'a str,
        command: Command,
        actor: &'a str,
    ) -> BoxFuture<'a, Result<CaseState, RuntimeError>>;

    fn case<'a>(&'a self, case_id: &'a str)
    -> BoxFuture<'a, Result<Option<CaseState>, StoreError>>;

    fn history<'a>(
        &'a self,
        case_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<HistoryRecord>, StoreError>>;

    fn search<'a>(
        &'a self,
        search: &'a CaseSearch,
    ) -> BoxFuture<'a, Result<Vec<CaseSummary>, StoreError>>;

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    fn token_by_hash(&self, hash: String)
    -> BoxFuture<'_, Result<Option<TokenRecord>, StoreError>>;

    fn claim_key<'a>(
        &'a self,
        case_id: &'a str,
        key: &'a str,
        fingerprint: &'a str,
        stale_before: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<KeyClaim, StoreError>>;

    fn settle_key<'a>(
        &'a self,
        case_id: &'a str,
        key: &'a str,
        status: u16,
        body: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    fn release_key<'a>(
        &'a self,
        case_id: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Recomputes the history's hash chains: one case's, or every case's
    /// and the checkpoints'.
    fn verify_history<'a>(
        &'a self,
        case_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Verification, StoreError>>;

    /// History written in `[from, to)`, by case and seq.
    fn history_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Vec<ExportedEvent>, StoreError>>;
}

impl<S: Store + ApiStore + AuditStore + MaterialStore> Backend for Orchestrator<S> {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn start<'a>(
        &'a self,
        workflow: &'a str,
        input: Data,
        actor: &'a str,
    ) -> BoxFuture<'a, Result<CaseState, RuntimeError>> {
        Box::pin(Orchestrator::start(self, workflow, input, actor))
    }

    fn apply<'a>(
        &'a self,
        case_id: &'a str,
        command: Command,
        actor: &'a str,
    ) -> BoxFuture<'a, Result<CaseState, RuntimeError>> {
        Box::pin(async move {
            match Orchestrator::apply(self, case_id, command, actor, Lock::Wait).await? {
                Updated::Written(decision) => Ok(decision.state),
                // Nothing changed: answer with the case as it stands.
                Updated::Unchanged | Updated::Busy => self
                    .store
                    .case(case_id)
                    .await?
                    .map(|r| r.state)
                    .ok_or_else(|| RuntimeError::UnknownCase(case_id.to_owned())),
            }
        })
    }

    fn case<'a>(
        &'a self,
        case_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CaseState>, StoreError>> {
        Box::pin(async move { Ok(self.store.case(case_id).await?.map(|r| r.state)) })
    }

    fn history<'a>(
        &'a self,
        case_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<HistoryRecord>, StoreError>> {
        Box::pin(self.store.history(case_id))
    }

    fn search<'a>(
        &'a self,
        search: &'a CaseSearch,
    ) -> BoxFuture<'a, Result<Vec<CaseSummary>, StoreError>> {
        Box::pin(self.store.search_cases(search))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.store.ping())
    }

    fn token_by_hash(
        &self,
        hash: String,
    ) -> BoxFuture<'_, Result<Option<TokenRecord>, StoreError>> {
        Box::pin(async move { self.store.token_by_hash(&hash).await })
    }

    fn claim_key<'a>(
        &'a self,
        case_id: &'a str,
        key: &'a str,
        fingerprint: &'a str,
        stale_before: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<KeyClaim, StoreError>> {
        let now = self.clock.now();
        Box::pin(
            self.store
                .claim_key(case_id, key, fingerprint, now, stale_before),
        )
    }

    fn settle_key<'a>(
        &'a self,
        case_id: &'a str,
        key: &'a str,
        status: u16,
        body: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.store.settle_key(case_id, key, status, body))
    }

    fn release_key<'a>(
        &'a self,
        case_id: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.store.release_key(case_id, key))
    }

    fn verify_history<'a>(
        &'a self,
        case_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Verification, StoreError>> {
        Box::pin(audit::verification(&*self.store, case_id))
    }

    fn history_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Vec<ExportedEvent>, StoreError>> {
        Box::pin(self.store.history_between(from, to))
    }
}
