//! Rotating the master keys: every case's data key wrapped again under
//! the newest one, after which older master keys can be retired.

use std::future::Future;

use super::StoreError;
use super::postgres::PgStore;
use super::sqlite::SqliteStore;

/// What a rewrap did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewrapped {
    /// Case keys now wrapped under the newest master key.
    pub rewrapped: u64,
    /// Case keys that already were.
    pub current: u64,
    /// Cases whose personal data is erased: no key to wrap.
    pub erased: u64,
}

pub trait KeyStore: Send + Sync {
    /// Wraps every case's data key under the store's newest master key.
    /// A case erased meanwhile stays erased.
    fn rewrap_case_keys(&self) -> impl Future<Output = Result<Rewrapped, StoreError>> + Send;
}

const KEYS: &str = "SELECT id, data_key FROM cases WHERE data_key IS NOT NULL ORDER BY id";
const ERASED: &str = "SELECT count(*) FROM cases WHERE data_key IS NULL";
/// Compare-and-set: an erasure between read and write is not undone.
const SET_KEY: &str = "UPDATE cases SET data_key = $2 WHERE id = $1 AND data_key = $3";

macro_rules! key_store {
    ($store:ty) => {
        impl KeyStore for $store {
            async fn rewrap_case_keys(&self) -> Result<Rewrapped, StoreError> {
                let rows: Vec<(String, String)> =
                    sqlx::query_as(KEYS).fetch_all(self.pool()).await?;
                let mut done = Rewrapped::default();
                for (case_id, wrapped) in rows {
                    match self.data_keys().rewrap(&case_id, &wrapped)? {
                        None => done.current += 1,
                        Some(new) => {
                            let set = sqlx::query(SET_KEY)
                                .bind(&case_id)
                                .bind(&new)
                                .bind(&wrapped)
                                .execute(self.pool())
                                .await?;
                            if set.rows_affected() == 1 {
                                done.rewrapped += 1;
                            }
                        }
                    }
                }
                let erased: i64 = sqlx::query_scalar(ERASED).fetch_one(self.pool()).await?;
                done.erased = super::rows::count(erased);
                Ok(done)
            }
        }
    };
}

key_store!(PgStore);
key_store!(SqliteStore);
