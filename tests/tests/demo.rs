//! The README's main command: the demo runs three cases to their expected
//! outcomes and shows every published step of the process.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test that cannot set up must fail

use docket_tests::{orchestrator, stderr, stdout};

#[test]
fn the_demo_runs_three_applications_to_a_collected_permit() {
    let out = orchestrator(&["demo"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert!(text.contains("weeks pass in seconds"));
    for published in [
        "Real-name identity verification",
        "Applicant binds the residence address",
        "Identity authentication by the police intranet",
        "Applicant submits the temporary residence registration",
        "Applicant submits the residence permit application",
        "Notice to collect the permit",
    ] {
        assert!(
            text.contains(published),
            "the timeline never shows “{published}”"
        );
    }
    assert_eq!(
        text.matches("— expected issued: as expected").count(),
        3,
        "{text}"
    );
    // Case (b) is filed by a guardian, case (c) rejected and resubmitted,
    // and the real-name service was down once.
    assert!(text.contains("branch") && text.contains("input.through_agent → verify_agent"));
    assert!(text.contains("event registration_rejected"));
    assert!(text.contains("unavailable (retryable)") && text.contains("retry scheduled"));
    // Personal data never appears in the output.
    for secret in ["11010519491231002X", "陈明", "13800000001", "东海街道"] {
        assert!(!text.contains(secret), "{secret} leaked into the timeline");
    }
}
