//! What the HTTP API ([`crate::api`]) keeps in SQL besides cases: its
//! bearer tokens (hashed), the idempotency keys of events sent through it,
//! and the richer case search it offers.
//!
//! Kept out of [`Store`](super::Store): the engine's loops never need it.

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, FromRow};

use super::postgres::PgStore;
use super::rows::SummaryRow;
use super::sqlite::SqliteStore;
use super::{CaseSummary, StoreError};

/// A token as stored: never its text, only who holds it and what for.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct TokenRecord {
    pub name: String,
    /// A role name, checked by the API when the token is used.
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What [`ApiStore::claim_key`] found for an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// The key is new (or its first request died half-way): the caller
    /// applies the request and then calls [`ApiStore::settle_key`] or
    /// [`ApiStore::release_key`].
    Fresh,
    /// The key's first request was answered so: answer the same again.
    Answered { status: u16, body: String },
    /// The key was used for a different request.
    Conflict,
    /// The key's first request is still being applied.
    InFlight,
}

/// A search over cases, newest first. Every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct CaseSearch {
    pub workflow: Option<String>,
    /// `active`, `completed` or `cancelled`.
    pub status: Option<String>,
    pub step: Option<String>,
    /// Cases created at or after this time.
    pub created_from: Option<DateTime<Utc>>,
    /// Cases created before this time.
    pub created_to: Option<DateTime<Utc>>,
    /// Only active cases with a deadline past due at this time: one still
    /// running whose due date has passed, or one already expired.
    pub overdue_at: Option<DateTime<Utc>>,
    /// Resume after this case (its creation time and id), from the
    /// previous page.
    pub after: Option<(DateTime<Utc>, String)>,
    pub limit: u32,
}

pub trait ApiStore: Send + Sync {
    /// Whether the database answers.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores a new token; `false`, storing nothing, when the name was
    /// ever used (a revoked name is not given out again).
    fn create_token(
        &self,
        name: &str,
        role: &str,
        hash: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Revokes a token; `false` when no unrevoked token has the name.
    fn revoke_token(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The unrevoked token whose text hashes to `hash`.
    fn token_by_hash(
        &self,
        hash: &str,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;

    /// Claims `key` for a request on `case_id` whose content hashes to
    /// `fingerprint`. A claim left unanswered since before `stale_before`
    /// (its process died) is taken over.
    fn claim_key(
        &self,
        case_id: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> impl Future<Output = Result<KeyClaim, StoreError>> + Send;

    /// Records the answer to a claimed key's first request.
    fn settle_key(
        &self,
        case_id: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives a claimed key up (the request failed for a passing reason), so
    /// a retry applies it afresh.
    fn release_key(
        &self,
        case_id: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn search_cases(
        &self,
        search: &CaseSearch,
    ) -> impl Future<Output = Result<Vec<CaseSummary>, StoreError>> + Send;
}

const INSERT_TOKEN: &str = "\
    INSERT INTO api_tokens (name, role, hash, created_at) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (name) DO NOTHING";

const REVOKE_TOKEN: &str = "\
    UPDATE api_tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL";

const TOKEN_BY_HASH: &str = "\
    SELECT name, role, created_at, revoked_at FROM api_tokens \
    WHERE hash = $1 AND revoked_at IS NULL";

const INSERT_KEY: &str = "\
    INSERT INTO api_idempotency (case_id, key, fingerprint, created_at) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (case_id, key) DO NOTHING";

const SELECT_KEY: &str = "\
    SELECT fingerprint, status, response, created_at FROM api_idempotency \
    WHERE case_id = $1 AND key = $2";

/// Takes over a claim only if it is still the stale one that was read.
const TAKE_OVER_KEY: &str = "\
    UPDATE api_idempotency SET created_at = $3 \
    WHERE case_id = $1 AND key = $2 AND status IS NULL AND created_at = $4";

const SETTLE_KEY: &str = "\
    UPDATE api_idempotency SET status = $3, response = $4 WHERE case_id = $1 AND key = $2";

const RELEASE_KEY: &str = "\
    DELETE FROM api_idempotency WHERE case_id = $1 AND key = $2 AND status IS NULL";

#[derive(Debug, FromRow)]
struct KeyRow {
    fingerprint: String,
    status: Option<i32>,
    response: Option<String>,
    created_at: DateTime<Utc>,
}

/// What to do with a key that was already there.
enum Existing {
    Decided(KeyClaim),
    /// A stale claim: take it over if it still reads `created_at`.
    TakeOver(DateTime<Utc>),
}

fn existing(row: Option<KeyRow>, fingerprint: &str, stale_before: DateTime<Utc>) -> Existing {
    let Some(row) = row else {
        // Released between our insert and our read: the other request
        // failed and its client will retry; so may ours.
        return Existing::Decided(KeyClaim::InFlight);
    };
    if row.fingerprint != fingerprint {
        return Existing::Decided(KeyClaim::Conflict);
    }
    match (row.status, row.response) {
        (Some(status), Some(body)) => Existing::Decided(KeyClaim::Answered {
            status: u16::try_from(status).unwrap_or(500),
            body,
        }),
        _ if row.created_at < stale_before => Existing::TakeOver(row.created_at),
        _ => Existing::Decided(KeyClaim::InFlight),
    }
}

/// A value bound to a search's placeholder.
enum Bind {
    Text(String),
    Time(DateTime<Utc>),
    Int(i64),
}

/// The SQL of a search and its values, `$1…` in order. `overdue` is the
/// database's own condition on `c.state` with `{now}` for the placeholder
/// of the time: the deadlines live in the state's JSON, read differently
/// by each database.
fn search_sql(search: &CaseSearch, overdue: &str) -> (String, Vec<Bind>) {
    let mut sql = String::from(
        "SELECT c.id, d.name AS workflow, d.version, c.status, c.outcome, \
         c.current_step AS step, c.created_at, c.updated_at \
         FROM cases c JOIN definitions d ON d.id = c.definition_id WHERE 1 = 1",
    );
    let mut binds = Vec::new();
    let mut push = |sql: &mut String, condition: &str, bind: Bind| {
        binds.push(bind);
        let n = binds.len();
        sql.push_str(" AND ");
        sql.push_str(&condition.replace("{}", &format!("${n}")));
    };
    let text_filters = [
        ("d.name = {}", &search.workflow),
        ("c.status = {}", &search.status),
        ("c.current_step = {}", &search.step),
    ];
    for (condition, value) in text_filters {
        if let Some(value) = value {
            push(&mut sql, condition, Bind::Text(value.clone()));
        }
    }
    if let Some(from) = search.created_from {
        push(&mut sql, "c.created_at >= {}", Bind::Time(from));
    }
    if let Some(to) = search.created_to {
        push(&mut sql, "c.created_at < {}", Bind::Time(to));
    }
    if let Some(now) = search.overdue_at {
        let condition = format!("c.status = 'active' AND {}", overdue.replace("{now}", "{}"));
        push(&mut sql, &condition, Bind::Time(now));
    }
    if let Some((created_at, id)) = &search.after {
        // Keyset paging: stable while cases are added, unlike an offset.
        push(&mut sql, "(c.created_at < {}", Bind::Time(*created_at));
        let n = binds.len();
        binds.push(Bind::Text(id.clone()));
        sql.push_str(&format!(
            " OR (c.created_at = ${n} AND c.id < ${}))",
            binds.len()
        ));
    }
    binds.push(Bind::Int(i64::from(search.limit)));
    sql.push_str(&format!(
        " ORDER BY c.created_at DESC, c.id DESC LIMIT ${}",
        binds.len()
    ));
    (sql, binds)
}

const PG_OVERDUE: &str = "EXISTS (SELECT 1 FROM jsonb_each(c.state -> 'deadlines') AS dl(name, v) \
     WHERE v -> 'status' ->> 'status' = 'expired' \
     OR (v -> 'status' ->> 'status' = 'running' AND (v ->> 'due')::timestamptz <= {now}))";

// julianday() compares the instants, whatever fraction digits each has.
const SQLITE_OVERDUE: &str = "EXISTS (SELECT 1 FROM json_each(c.state, '$.deadlines') AS dl \
     WHERE json_extract(dl.value, '$.status.status') = 'expired' \
     OR (json_extract(dl.value, '$.status.status') = 'running' \
     AND julianday(json_extract(dl.value, '$.due')) <= julianday({now})))";

/// Implements the trait for one store; the SQL above is shared, the pool
/// and its types differ.
macro_rules! api_store {
    ($store:ty, $overdue:expr) => {
        impl ApiStore for $store {
            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(self.pool()).await?;
                Ok(())
            }

            async fn create_token(
                &self,
                name: &str,
                role: &str,
                hash: &str,
                now: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(INSERT_TOKEN)
                    .bind(name)
                    .bind(role)
                    .bind(hash)
                    .bind(now)
                    .execute(self.pool())
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn revoke_token(
                &self,
                name: &str,
                now: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(REVOKE_TOKEN)
                    .bind(name)
                    .bind(now)
                    .execute(self.pool())
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
                Ok(sqlx::query_as(TOKEN_BY_HASH)
                    .bind(hash)
                    .fetch_optional(self.pool())
                    .await?)
            }

            async fn claim_key(
                &self,
                case_id: &str,
                key: &str,
                fingerprint: &str,
                now: DateTime<Utc>,
                stale_before: DateTime<Utc>,
            ) -> Result<KeyClaim, StoreError> {
                let inserted = sqlx::query(INSERT_KEY)
                    .bind(case_id)
                    .bind(key)
                    .bind(fingerprint)
                    .bind(now)
                    .execute(self.pool())
                    .await?;
                if inserted.rows_affected() == 1 {
                    return Ok(KeyClaim::Fresh);
                }
                let row: Option<KeyRow> = sqlx::query_as(SELECT_KEY)
                    .bind(case_id)
                    .bind(key)
                    .fetch_optional(self.pool())
                    .await?;
                match existing(row, fingerprint, stale_before) {
                    Existing::Decided(claim) => Ok(claim),
                    Existing::TakeOver(was) => {
                        let taken = sqlx::query(TAKE_OVER_KEY)
                            .bind(case_id)
                            .bind(key)
                            .bind(now)
                            .bind(was)
                            .execute(self.pool())
                            .await?;
                        Ok(if taken.rows_affected() == 1 {
                            KeyClaim::Fresh
                        } else {
                            KeyClaim::InFlight
                        })
                    }
                }
            }

            async fn settle_key(
                &self,
                case_id: &str,
                key: &str,
                status: u16,
                body: &str,
            ) -> Result<(), StoreError> {
                sqlx::query(SETTLE_KEY)
                    .bind(case_id)
                    .bind(key)
                    .bind(i32::from(status))
                    .bind(body)
                    .execute(self.pool())
                    .await?;
                Ok(())
            }

            async fn release_key(&self, case_id: &str, key: &str) -> Result<(), StoreError> {
                sqlx::query(RELEASE_KEY)
                    .bind(case_id)
                    .bind(key)
                    .execute(self.pool())
                    .await?;
                Ok(())
            }

            async fn search_cases(
                &self,
                search: &CaseSearch,
            ) -> Result<Vec<CaseSummary>, StoreError> {
                let (text, binds) = search_sql(search, $overdue);
                let mut query = sqlx::query_as::<_, SummaryRow>(AssertSqlSafe(text));
                for bind in binds {
                    query = match bind {
                        Bind::Text(v) => query.bind(v),
                        Bind::Time(v) => query.bind(v),
                        Bind::Int(v) => query.bind(v),
                    };
                }
                let rows = query.fetch_all(self.pool()).await?;
                rows.into_iter().map(SummaryRow::into_summary).collect()
            }
        }
    };
}

api_store!(PgStore, PG_OVERDUE);
api_store!(SqliteStore, SQLITE_OVERDUE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_numbers_its_placeholders_in_order() {
        let now = Utc::now();
        let search = CaseSearch {
            workflow: Some("w".into()),
            step: Some("s".into()),
            overdue_at: Some(now),
            after: Some((now, "c1".into())),
            limit: 10,
            ..CaseSearch::default()
        };
        let (sql, binds) = search_sql(&search, "due <= {now}");
        assert!(sql.contains("d.name = $1 AND c.current_step = $2"), "{sql}");
        assert!(sql.contains("due <= $3"), "{sql}");
        assert!(
            sql.contains("(c.created_at < $4 OR (c.created_at = $4 AND c.id < $5))"),
            "{sql}"
        );
        assert!(sql.ends_with("LIMIT $6"), "{sql}");
        assert_eq!(binds.len(), 6);
    }

    #[tokio::test]
    async fn tokens_and_keys_on_sqlite() -> Result<(), StoreError> {
        use crate::store::Store;
        let store = SqliteStore::in_memory().await?;
        store.migrate().await?;
        let now = Utc::now();
        assert!(store.create_token("desk", "officer", "h1", now).await?);
        assert!(!store.create_token("desk", "admin", "h2", now).await?);
        let token = store.token_by_hash("h1").await?;
        assert_eq!(token.map(|t| t.role), Some("officer".to_owned()));
        assert!(store.revoke_token("desk", now).await?);
        assert!(!store.revoke_token("desk", now).await?);
        assert_eq!(store.token_by_hash("h1").await?, None);
        // A revoked name is not given out again.
        assert!(!store.create_token("desk", "officer", "h3", now).await?);

        let old = now - chrono::Duration::minutes(5);
        let claim = |fp: &'static str, at| store.claim_key("c1", "k", fp, at, old);
        assert_eq!(claim("f", now).await?, KeyClaim::Fresh);
        assert_eq!(claim("f", now).await?, KeyClaim::InFlight);
        assert_eq!(claim("g", now).await?, KeyClaim::Conflict);
        store.settle_key("c1", "k", 200, "{}").await?;
        assert_eq!(
            claim("f", now).await?,
            KeyClaim::Answered {
                status: 200,
                body: "{}".into()
            }
        );
        // A claim whose process died is taken over once it is stale.
        let later = now + chrono::Duration::minutes(10);
        let fresh_cutoff = now + chrono::Duration::minutes(1);
        assert_eq!(
            store.claim_key("c2", "k", "f", old, old).await?,
            KeyClaim::Fresh
        );
        assert_eq!(
            store.claim_key("c2", "k", "f", later, fresh_cutoff).await?,
            KeyClaim::Fresh
        );
        store.release_key("c2", "k").await?;
        assert_eq!(
            store.claim_key("c2", "k", "f", later, fresh_cutoff).await?,
            KeyClaim::Fresh
        );
        store.ping().await
    }
}
