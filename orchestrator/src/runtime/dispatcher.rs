//! Moving jobs from the SQL outbox onto the transport, keeping only a
//! bounded window of jobs per queue on the transport: the backlog stays in
//! SQL, where it costs nothing, and the transport never holds a list long
//! enough to slow it down (apalis-redis 1.0.0 fails at 8,000 due jobs).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use futures_util::{StreamExt, stream};

use crate::engine::Job;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, thiserror::Error)]
#[error("the transport refused a job: {0}")]
pub struct TransportError(pub String);

/// Jobs a transport that pushes one at a time has in flight at once, at
/// most.
const PUSHES_AT_ONCE: usize = 16;

/// Where dispatched jobs go: the in-process queue or Redis.
pub trait Transport: std::fmt::Debug + Send + Sync + 'static {
    fn push(&self, job: Job) -> BoxFuture<'_, Result<(), TransportError>>;

    /// Pushes `jobs`, with a result each, in their order. By default one
    /// [`Transport::push`] each, several in flight, so that the last job
    /// of a round does not wait for every round trip before its own.
    fn push_all(&self, jobs: Vec<Job>) -> BoxFuture<'_, Vec<Result<(), TransportError>>> {
        Box::pin(
            stream::iter(jobs)
                .map(|job| self.push(job))
                .buffered(PUSHES_AT_ONCE)
                .collect(),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Dispatches waiting jobs, oldest first, up to `window` outstanding jobs
/// per queue. Returns how many were dispatched.
///
/// The jobs of a round are claimed in one transaction and then pushed, so
/// a round costs the database a few statements whatever its size, not a
/// transaction per job (BENCHMARKS.md).
pub async fn dispatch_once<S: Store>(
    store: &S,
    transport: &dyn Transport,
    window: u64,
    now: DateTime<Utc>,
) -> Result<usize, DispatchError> {
    let waiting = store.waiting(1_000).await?;
    let mut room: BTreeMap<String, u64> = BTreeMap::new();
    let mut picked = Vec::new();
    for job in waiting {
        let left = match room.get_mut(&job.queue) {
            Some(left) => left,
            None => {
                let outstanding = store.dispatched_unfinished(&job.queue).await?;
                room.entry(job.queue)
                    .or_insert(window.saturating_sub(outstanding))
            }
        };
        if *left > 0 {
            *left -= 1;
            picked.push(job.id);
        }
    }
    // Claimed first, so that of several orchestrators one pushes each job.
    let claimed = store.claim_jobs(&picked, now).await?;
    let (ids, jobs): (Vec<i64>, Vec<Job>) = claimed.into_iter().map(|r| (r.id, r.job)).unzip();
    let pushed: Vec<(i64, Result<(), TransportError>)> = ids
        .into_iter()
        .zip(transport.push_all(jobs).await)
        .collect();
    let mut refused = None;
    let mut unpushed = Vec::new();
    for (id, result) in &pushed {
        if let Err(e) = result {
            unpushed.push(*id);
            refused.get_or_insert_with(|| e.clone());
        }
    }
    if let Some(e) = refused {
        store.release_jobs(&unpushed).await?;
        return Err(e.into());
    }
    Ok(pushed.len())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::TimeZone;

    use super::*;
    use crate::engine;
    use crate::privacy::DataKeys;
    use crate::store::sqlite::SqliteStore;
    use crate::testing::{ctx, input};

    /// Takes `accept` jobs, then refuses every other.
    #[derive(Debug)]
    struct Flaky {
        accept: usize,
        pushed: Mutex<Vec<String>>,
    }

    impl Transport for Flaky {
        fn push(&self, job: Job) -> BoxFuture<'_, Result<(), TransportError>> {
            let mut pushed = self.pushed.lock().expect("not poisoned");
            let result = if pushed.len() < self.accept {
                pushed.push(job.case_id);
                Ok(())
            } else {
                Err(TransportError("full".into()))
            };
            Box::pin(async move { result })
        }
    }

    async fn store_with_cases(cases: &[&str]) -> SqliteStore {
        let store = SqliteStore::in_memory()
            .await
            .expect("store")
            .with_data_keys(DataKeys::ephemeral());
        store.migrate().await.expect("migrate");
        let now = Utc
            .with_ymd_and_hms(2026, 3, 2, 1, 0, 0)
            .single()
            .expect("a valid time");
        let definition = store
            .deploy("residence-permit", 1, "h", "s", now)
            .await
            .expect("deploy");
        for case in cases {
            let decision = engine::start(ctx(now), case, input(false)).expect("start");
            store
                .insert_case(definition.id, &decision, "test", now)
                .await
                .expect("insert");
        }
        store
    }

    #[tokio::test]
    async fn a_round_keeps_to_the_window_and_gives_back_what_the_transport_refused() {
        let store = store_with_cases(&["c1", "c2", "c3", "c4"]).await;
        let now = Utc::now();
        let transport = Flaky {
            accept: 1,
            pushed: Mutex::default(),
        };
        // A window of 3: c4 is not even claimed. c1 goes out, c2 is refused,
        // and c2 and c3, claimed with it, wait again.
        let refused = dispatch_once(&store, &transport, 3, now).await;
        assert!(
            matches!(refused, Err(DispatchError::Transport(_))),
            "{refused:?}"
        );
        assert_eq!(*transport.pushed.lock().expect("not poisoned"), ["c1"]);
        let waiting: Vec<String> = store
            .waiting_jobs(None, 10)
            .await
            .expect("waiting")
            .into_iter()
            .map(|r| r.job.case_id)
            .collect();
        assert_eq!(waiting, ["c2", "c3", "c4"]);

        let transport = Flaky {
            accept: usize::MAX,
            pushed: Mutex::default(),
        };
        let queue = store.waiting_jobs(None, 1).await.expect("waiting")[0]
            .job
            .queue
            .clone();
        assert_eq!(store.dispatched_unfinished(&queue).await.expect("count"), 1);
        assert_eq!(
            dispatch_once(&store, &transport, 3, now)
                .await
                .expect("dispatch"),
            2,
            "one of the window of 3 is still out"
        );
        assert_eq!(
            *transport.pushed.lock().expect("not poisoned"),
            ["c2", "c3"]
        );
    }
}
