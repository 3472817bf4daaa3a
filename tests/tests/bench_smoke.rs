//! The benchmark (`ops/bench`, BENCHMARKS.md) runs and reports: a
//! seconds-long `docket-bench --smoke` with tiny sizes. It asserts only
//! that every phase ran and every figure was printed and written; the
//! figures of a debug build on a shared machine mean nothing.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use std::process::Command;

use docket_tests::{binary, stderr, stdout, suite_env};
use serde_json::Value;

#[test]
fn the_benchmark_runs_every_phase_and_reports_every_figure() {
    let Some(pg) = suite_env("DOCKET_TEST_DATABASE_URL") else {
        return;
    };
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
        && std::env::var("CI").as_deref() != Ok("true")
    {
        eprintln!("skipped: no redis-server on this machine");
        return;
    }
    let dir = std::env::temp_dir().join(format!("docket-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("bench.json");
    // Built with the tests' profile, beside each other.
    let bin_dir = binary("orchestrator")
        .parent()
        .expect("the binaries' folder")
        .to_path_buf();
    let out = Command::new(env!("CARGO_BIN_EXE_docket-bench"))
        .arg("--smoke")
        .args(["--fixed-load", "50"])
        .arg("--json")
        .arg(&json)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .env("DATABASE_URL", &pg)
        .output()
        .expect("run docket-bench");
    assert!(
        out.status.success(),
        "docket-bench --smoke failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );

    let table = stdout(&out);
    for row in [
        "Redis floor",
        "apalis-redis no-op",
        "apalis-redis no-op: CPU per job",
        "Orchestrated throughput, postgres",
        "CPU per step, postgres",
        "CPU per step, sqlite",
        "CPU per step, postgres, half load",
        "Dispatch latency, postgres, saturating",
        "Dispatch latency, postgres, half load",
        "Orchestrated throughput, sqlite",
        "Dispatch latency, sqlite, half load",
        "Dispatch latency, sqlite, at 50 steps/s",
        "Start latency, POST /cases",
        "waiting cases: serve RSS",
        "waiting cases: serve CPU",
        "waiting cases: SQL bytes",
        "timers due together",
    ] {
        assert!(table.contains(row), "no `{row}` in the table:\n{table}");
    }

    let figures: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON")).expect("JSON");
    let number = |v: &Value, what: &str| {
        assert!(
            v.as_f64().is_some_and(f64::is_finite),
            "{what} is not a number: {v}"
        );
    };
    number(
        &figures["redis_floor"]["lpush_per_s"],
        "redis_floor.lpush_per_s",
    );
    number(
        &figures["redis_floor"]["rpop_per_s"],
        "redis_floor.rpop_per_s",
    );
    number(
        &figures["raw_apalis"]["drain_per_s"],
        "raw_apalis.drain_per_s",
    );
    for process in ["worker_us", "redis_us"] {
        number(
            &figures["raw_apalis"]["cpu_per_job"][process],
            &format!("raw_apalis.cpu_per_job.{process}"),
        );
    }
    let flows = figures["orchestrated"].as_array().expect("orchestrated");
    assert_eq!(flows.len(), 2, "postgres and sqlite: {flows:?}");
    for f in flows {
        number(&f["steps_per_s"], "steps_per_s");
        number(&f["fixed_load_steps_per_s"], "fixed_load_steps_per_s");
        let processes = ["serve_us", "worker_us", "redis_us", "bench_us", "cores"];
        for run in ["cpu_per_step", "cpu_per_step_half_load"] {
            for process in processes {
                number(&f[run][process], &format!("{run}.{process}"));
            }
            if f["database"] == "postgres" {
                number(&f[run]["database_us"], &format!("{run}.database_us"));
            }
        }
        let loads = [
            "dispatch_latency_saturated",
            "dispatch_latency_half_load",
            "dispatch_latency_fixed_load",
        ];
        for load in loads {
            for part in ["total", "outbox", "pickup"] {
                for q in ["p50_ms", "p99_ms", "max_ms"] {
                    number(&f[load][part][q], &format!("{load}.{part}.{q}"));
                }
            }
        }
    }
    number(&figures["start_latency"]["latency"]["p99_ms"], "start p99");
    let waiting = figures["waiting"].as_array().expect("waiting");
    assert_eq!(waiting.len(), 2, "two sizes: {waiting:?}");
    for w in waiting {
        number(&w["rss_bytes"], "rss_bytes");
        number(&w["cpu_percent_of_core"], "cpu_percent_of_core");
        number(&w["sql_bytes_per_case"], "sql_bytes_per_case");
    }
    number(&figures["timers"]["fire_secs"], "timers.fire_secs");
    assert!(
        figures["targets"].as_array().is_some_and(|t| t.len() == 6),
        "every target judged: {}",
        figures["targets"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
