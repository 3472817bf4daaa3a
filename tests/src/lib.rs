//! Helpers shared by the end-to-end tests: they run Docket's real binaries
//! as a user would.

// Test support: failing to run a binary must fail the test that asked.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository's top folder.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The path of a workspace binary, built (once per test process) with the
/// same profile as the tests so it is never stale.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([
            "build",
            "--quiet",
            "--bin",
            "orchestrator",
            "--bin",
            "worker",
            "--bin",
            "docket-simulator",
        ]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd.current_dir(repo()).status().expect("run cargo build");
        assert!(status.success(), "cargo build failed");
    });
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    target.join(profile).join(name)
}

/// Runs `orchestrator` with the given arguments from the repository's top
/// folder.
pub fn orchestrator(args: &[&str]) -> Output {
    Command::new(binary("orchestrator"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run orchestrator")
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
