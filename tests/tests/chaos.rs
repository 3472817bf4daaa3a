//! The fault-injection suite (issue 7): each scenario runs a handful of
//! cases on the real binaries — `orchestrator serve` on PostgreSQL, Redis,
//! `worker`s, the services' simulator — injects one fault, and ends with
//! the same checker (`docket_tests::chaos::check`): every case ended as
//! expected, no case lost or added, no attempt's completion applied twice,
//! every retry explained by the history, every hash chain verified. Each
//! prints its row of the table `ops/chaos` shows.
//!
//! The cases run the suite's own workflows (`tests/chaos/`), whose
//! timeouts and backoff are seconds, so a lost attempt is retried within
//! the test's budget.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::time::{Duration, Instant};

use chrono::Utc;
use docket_tests::chaos::Rig;
use docket_workers::contract::Outcome;

/// Long enough for any scenario's cases on a loaded 2-core machine.
const WITHIN: Duration = Duration::from_secs(90);

/// Scenario 1: a worker is SIGKILLed while it holds jobs; another worker
/// (or the attempts' timers) runs them again, and every case completes.
#[test]
fn worker_killed_mid_job() {
    let Some(mut rig) = Rig::new("worker_killed_mid_job", "1500ms") else {
        return;
    };
    four_cases_with_a_job_in_flight(&mut rig);
    let fault = Utc::now();
    rig.kill_worker(0);
    rig.worker();
    rig.wait_all_completed(WITHIN);
    let found = rig.finish(Some(fault));
    assert_eq!(found.completed, 4);
}

/// Scenario 2, first half: the orchestrator dies (abort, as a SIGKILL
/// would leave it) after committing a job and before handing it to Redis;
/// the next orchestrator dispatches it from the outbox.
#[test]
fn orchestrator_killed_between_commit_and_dispatch() {
    let Some(mut rig) = Rig::new("orchestrator_killed_between_commit_and_dispatch", "0s") else {
        return;
    };
    rig.worker();
    for _ in 0..3 {
        rig.start();
    }
    let mut crashing = rig.serve_with(&[("DOCKET_FAULT_ABORT_BEFORE_DISPATCH", "2")], &[]);
    let status = crashing.exit_within(WITHIN).expect("the fault fired");
    assert!(!status.success(), "the orchestrator was meant to abort");
    let fault = Utc::now();
    rig.serve();
    rig.wait_all_completed(WITHIN);
    let found = rig.finish(Some(fault));
    assert_eq!(found.completed, 3);
}

/// Scenario 2, second half: the orchestrator is SIGKILLed while its timer
/// loop fires a batch of due timers (twelve waits fall due together and
/// the kill comes as soon as the first has fired); the next orchestrator
/// fires the rest, each once.
#[test]
fn orchestrator_killed_during_timer_sweep() {
    let Some(mut rig) = Rig::new("orchestrator_killed_during_timer_sweep", "0s") else {
        return;
    };
    rig.worker();
    for _ in 0..12 {
        rig.start_timer();
    }
    // Every wait's two-second timer is due before any orchestrator runs:
    // the first round fires them all.
    std::thread::sleep(Duration::from_secs(2));
    rig.serve();
    rig.wait_until("a timer fired", WITHIN, |r| r.events("wait_timed_out") > 0);
    let fault = Utc::now();
    rig.kill_serve(0);
    let fired = rig.events("wait_timed_out");
    eprintln!("killed with {fired} of 12 timers fired");
    rig.serve();
    rig.wait_all_completed(WITHIN);
    let found = rig.finish(Some(fault));
    assert_eq!(found.completed, 12);
}

/// Scenario 3, first half: `FLUSHALL` while workers hold jobs. The queues,
/// the jobs in flight and the workers' registrations are gone; SQL still
/// knows every attempt, and its timer retries what was lost.
#[test]
fn redis_flushall_mid_run() {
    let Some(mut rig) = Rig::new("redis_flushall_mid_run", "1s") else {
        return;
    };
    four_cases_with_a_job_in_flight(&mut rig);
    let fault = Utc::now();
    assert_eq!(rig.redis.cli(&["flushall"]), "OK");
    rig.wait_all_completed(WITHIN);
    let found = rig.finish(Some(fault));
    assert_eq!(found.completed, 4);
}

/// Scenario 3, second half: Redis is SIGKILLed while workers hold jobs and
/// started again on the same port, empty (no persistence).
#[test]
fn redis_restarted_without_persistence_mid_run() {
    let Some(mut rig) = Rig::new("redis_restarted_without_persistence_mid_run", "1s") else {
        return;
    };
    four_cases_with_a_job_in_flight(&mut rig);
    let fault = Utc::now();
    rig.redis.restart();
    // A case started after the restart runs too.
    rig.start();
    rig.wait_all_completed(WITHIN);
    let found = rig.finish(Some(fault));
    assert_eq!(found.completed, 5);
}

/// Scenario 4: Redis stops answering (SIGSTOP) for seven seconds, longer
/// than every client's five-second response timeout, while workers hold
/// jobs. Recovery is counted from the end of the stall.
#[test]
fn redis_answering_slowly() {
    let Some(mut rig) = Rig::new("redis_answering_slowly", "1s") else {
        return;
    };
    four_cases_with_a_job_in_flight(&mut rig);
    rig.redis.signal("STOP");
    std::thread::sleep(Duration::from_secs(7));
    rig.redis.signal("CONT");
    let fault = Utc::now();
    rig.start();
    rig.wait_all_completed(WITHIN);
    let found = rig.finish(Some(fault));
    assert_eq!(found.completed, 5);
}

/// Scenario 6: the same completion delivered twice, and a completion
/// arriving after its attempt timed out (while the retry is out, and after
/// the case ended). Each is recorded as ignored and changes nothing.
#[test]
fn duplicate_and_late_completions() {
    // Slower than the step's two-second timeout: the first attempts time out.
    let Some(mut rig) = Rig::new("duplicate_and_late_completions", "2500ms") else {
        return;
    };
    rig.serve();
    rig.worker();
    let cases = [rig.start(), rig.start()];
    rig.wait_until("an attempt timed out", WITHIN, |r| {
        r.events("attempt_timed_out") + r.events("attempt_failed") > 0
    });
    let fault = Utc::now();
    // The retries take a second: time to deliver late reports meanwhile.
    rig.simulator("1s", &[]);
    let mut injected = 0;
    let ignored_before = rig.events("completion_ignored");
    let mut timed_out = Vec::new();
    for case in &cases {
        rig.wait_until("the case's first attempt ended", WITHIN, |r| {
            !ended_badly(r, case).is_empty()
        });
        let first = ended_badly(&mut rig, case).remove(0);
        // The hung call's report, arriving while the retry is out.
        rig.inject_completion(&first, Outcome::succeeded("verified"));
        injected += 1;
        timed_out.push(first);
    }
    rig.wait_all_completed(WITHIN);
    for (case, first) in cases.iter().zip(&timed_out) {
        for attempt in rig.attempts(case, "attempt_succeeded") {
            // A worker's report delivered a second time.
            rig.inject_completion(&attempt, Outcome::succeeded("done"));
            injected += 1;
        }
        // The timed-out attempt's report, once more, after the end.
        rig.inject_completion(first, Outcome::succeeded("rejected"));
        injected += 1;
    }
    rig.wait_until("every injected report recorded as ignored", WITHIN, |r| {
        r.events("completion_ignored") >= ignored_before + injected
    });
    let found = rig.finish(Some(fault));
    assert_eq!(found.completed, 2);
    assert!(found.ignored >= injected, "{found:?}");
}

/// Scenario 7: a poison job — the service fails every call. The step ends
/// failed after its retry policy, visible to an operator, while other
/// cases keep flowing; once the service is back, the operator retries it
/// and the case completes. Recovery is counted from the operator's retry.
#[test]
fn poison_job_dead_letters_then_operator_retries() {
    let Some(mut rig) = Rig::new("poison_job_dead_letters_then_operator_retries", "0s") else {
        return;
    };
    rig.simulator("0s", &["--unavailable-first", "1000000"]);
    rig.serve();
    rig.worker();
    let poison = rig.start();
    for _ in 0..4 {
        rig.start_timer();
    }
    rig.wait_until("the poison step failed", WITHIN, |r| {
        r.phase(&poison).as_deref() == Some("failed")
    });
    rig.wait_until("the other cases completed", WITHIN, |r| r.completed() == 4);
    let status: serde_json::Value =
        serde_json::from_str(&rig.cli(&["status", &poison, "--json"])).expect("status JSON");
    assert_eq!(status["phase"]["phase"], "failed", "{status:#}");
    assert_eq!(status["phase"]["attempts"], 4, "{status:#}");
    assert_eq!(rig.attempts(&poison, "attempt_failed").len(), 4);

    rig.simulator("0s", &[]);
    let fault = Utc::now();
    rig.cli(&["retry", &poison, "--reason", "the service is back"]);
    rig.wait_all_completed(WITHIN);
    let found = rig.finish(Some(fault));
    assert_eq!(found.completed, 5);
}

/// Scenario 8: workers whose wall clocks are minutes off the
/// orchestrator's and Redis's (libfaketime), one behind and one ahead.
/// apalis-redis compares heartbeat times written by different clocks: run
/// by hand, the worker ahead took the one behind for dead every second,
/// re-ran its jobs and had it restart. So a worker measures its clock
/// against Redis's at start and refuses, saying why; the cases run on a
/// worker whose clock is right. (Jobs and reports do not wait for clocks
/// either way: each is made ready as it is pushed.)
#[test]
fn workers_with_skewed_clocks() {
    let Some(mut rig) = Rig::new("workers_with_skewed_clocks", "700ms") else {
        return;
    };
    rig.serve();
    for (offset, says) in [("-3m", "behind Redis's"), ("+3m", "ahead of Redis's")] {
        let Some((status, log)) = rig.worker_with_clock(offset) else {
            return;
        };
        assert!(!status.success(), "clock {offset}: {status}\n{log}");
        assert!(log.contains(says), "clock {offset}:\n{log}");
    }
    rig.worker();
    for _ in 0..8 {
        rig.start();
    }
    rig.wait_all_completed(WITHIN);
    let found = rig.finish(None);
    assert_eq!(found.completed, 8);
}

/// Scenario 9: two orchestrators on one database at once, sharing the
/// completions, the outbox and the timers.
#[test]
fn two_orchestrators_on_one_database() {
    let Some(mut rig) = Rig::new("two_orchestrators_on_one_database", "200ms") else {
        return;
    };
    rig.serve();
    rig.serve();
    rig.worker();
    for _ in 0..6 {
        rig.start();
        rig.start_timer();
    }
    rig.wait_all_completed(WITHIN);
    let found = rig.finish(None);
    assert_eq!(found.completed, 12);
}

/// Scenario 10: the external service hangs (no answer). The attempt times
/// out after the step's two seconds and is retried; once the service
/// answers again, the case completes.
#[test]
fn hanging_service_attempt_times_out_and_is_retried() {
    let Some(mut rig) = Rig::new("hanging_service_attempt_times_out_and_is_retried", "1h") else {
        return;
    };
    rig.serve();
    rig.worker();
    let fault = Utc::now();
    let cases = [rig.start(), rig.start()];
    for case in &cases {
        rig.wait_until("the hung attempt timed out", WITHIN, |r| {
            !ended_badly(r, case).is_empty()
        });
    }
    rig.simulator("0s", &[]);
    rig.wait_all_completed(WITHIN);
    let found = rig.finish(Some(fault));
    assert_eq!(found.completed, 2);
    assert!(found.timeouts >= 2, "{found:?}");
    assert!(found.retries >= 2, "{found:?}");
}

/// Starts an orchestrator, a worker and four cases, and returns once a
/// worker holds one of their jobs: the moment the Redis and worker faults
/// strike.
fn four_cases_with_a_job_in_flight(rig: &mut Rig) {
    rig.serve();
    rig.worker();
    for _ in 0..4 {
        rig.start();
    }
    rig.wait_until("a worker holds a job", WITHIN, |r| {
        r.redis.job_in_flight("identity")
    });
}

/// The attempts of `case` that timed out or failed, in history order.
fn ended_badly(rig: &mut Rig, case: &str) -> Vec<String> {
    let mut ids = rig.attempts(case, "attempt_timed_out");
    ids.extend(rig.attempts(case, "attempt_failed"));
    ids
}

/// Scenario 5: PostgreSQL stops as a crash would (every connection cut)
/// while workers hold jobs, and comes back three seconds later. The
/// orchestrator keeps running and resumes; API requests during the outage
/// get a clear error, not a hang or a crash. On a private cluster: the
/// suite's server must stay up for the other tests. The cluster commits
/// synchronously (PostgreSQL's default), as Docket's guarantees require:
/// with `synchronous_commit=off` a crash loses the last commits, and here
/// once lost a case whose start had been confirmed.
#[test]
fn postgres_restarted_mid_run() {
    let Some(mut rig) = Rig::on_cluster("postgres_restarted_mid_run", "1s") else {
        return;
    };
    let token = docket_tests::api_token(&rig.db.url, "chaos-operator", "operator");
    let api = format!("127.0.0.1:{}", docket_tests::free_port());
    rig.serve_extra(&["--api-listen", &api]);
    rig.worker();
    let first = rig.start();
    for _ in 0..3 {
        rig.start();
    }
    let client = reqwest::blocking::Client::new();
    let get = |path: &str| {
        client
            .get(format!("http://{api}{path}"))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(30))
            .send()
            .map(|r| (r.status().as_u16(), r.text().unwrap_or_default()))
    };
    rig.wait_until("the API answers", WITHIN, |_| {
        get(&format!("/cases/{first}")).is_ok_and(|(s, _)| s == 200)
    });
    rig.wait_until("a worker holds a job", WITHIN, |r| {
        r.redis.job_in_flight("identity")
    });
    rig.cluster().halt();
    let asked = Instant::now();
    let (status, body) = get(&format!("/cases/{first}")).expect("the API answers");
    eprintln!(
        "GET /cases/{{id}} during the outage, answered in {:?}: {status} {body}",
        asked.elapsed()
    );
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"unavailable\""), "{body}");
    let (ready, _) = get("/ready").expect("the API answers");
    assert_eq!(ready, 503, "/ready during the outage");
    std::thread::sleep(Duration::from_secs(3));
    rig.cluster().resume();
    // As for the Redis stall, recovery counts from the database's return.
    let fault = Utc::now();
    rig.start();
    rig.wait_all_completed(WITHIN);
    let found = rig.finish(Some(fault));
    assert_eq!(found.completed, 5);
}

/// Scenario 5's lesson, checked where an operator sees it: `serve` on a
/// database that confirms commits before they are durable says so at
/// start, and says nothing when commits are synchronous.
#[test]
fn serve_warns_when_the_database_may_lose_confirmed_commits() {
    const WARNING: &str = "confirms commits before they are durable";
    for (setting, warned) in [("off", true), ("on", false)] {
        let Some(db) = docket_tests::chaos::Database::create(&format!("sync_{setting}")) else {
            return;
        };
        db.set("synchronous_commit", setting);
        let log = std::env::temp_dir().join(format!(
            "docket-serve-sync-{setting}-{}.log",
            std::process::id()
        ));
        // The API answers once the start-up checks are done.
        let (serve, _) = docket_tests::serve_api_logged(&db.url, &[], &log);
        drop(serve);
        let text = std::fs::read_to_string(&log).expect("serve's log");
        let _ = std::fs::remove_file(&log);
        assert_eq!(
            text.contains(WARNING),
            warned,
            "synchronous_commit={setting}:\n{text}"
        );
    }
}
