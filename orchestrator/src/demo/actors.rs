//! The people in the demo: applicants and police officers, as scripts of
//! what each does when their case reaches a wait.

use chrono::Duration;
use serde_json::{Value, json};

use crate::engine::Data;

/// One thing an actor does when the case waits at `step`.
#[derive(Debug, Clone)]
pub struct Act {
    pub step: &'static str,
    /// How long after the case starts waiting.
    pub after: Duration,
    pub actor: &'static str,
    pub event: &'static str,
    pub data: Value,
}

/// A case the demo runs, and the outcome it must reach.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub label: &'static str,
    pub input: Data,
    pub acts: Vec<Act>,
    pub expected: &'static str,
}

fn act(
    step: &'static str,
    after: Duration,
    actor: &'static str,
    event: &'static str,
    data: Value,
) -> Act {
    Act {
        step,
        after,
        actor,
        event,
        data,
    }
}

const APPLICANT: &str = "applicant";
const POLICE: &str = "police";

fn object(v: Value) -> Data {
    v.as_object().cloned().unwrap_or_default()
}

/// The three cases of the demo.
pub fn scenarios() -> Vec<Scenario> {
    let employment = json!(["id_card", "photo", "lease_contract", "labour_contract"]);
    let study_by_guardian_incomplete = json!([
        "id_card",
        "accommodation_certificate",
        "student_card",
        "agent_id_card"
    ]);
    let study_by_guardian = json!([
        "id_card",
        "photo",
        "accommodation_certificate",
        "student_card",
        "agent_id_card",
        "principal_id_document"
    ]);
    let residence = json!(["id_card", "photo", "title_certificate"]);
    let common_end = |materials: &Value| {
        vec![
            act(
                "await_application",
                Duration::days(1),
                APPLICANT,
                "application_submitted",
                json!({"materials": materials}),
            ),
            act(
                "await_acceptance",
                Duration::days(1),
                POLICE,
                "application_accepted",
                json!({}),
            ),
            act(
                "await_permit",
                Duration::days(9),
                POLICE,
                "permit_ready",
                json!({}),
            ),
            act(
                "await_collection",
                Duration::days(3),
                APPLICANT,
                "permit_collected",
                json!({}),
            ),
        ]
    };
    let mut a = vec![
        act(
            "await_address",
            Duration::hours(2),
            APPLICANT,
            "address_bound",
            json!({"address": "泉州市丰泽区东海街道 1 号"}),
        ),
        act(
            "await_registration",
            Duration::days(1),
            APPLICANT,
            "registration_submitted",
            json!({"materials": employment}),
        ),
        act(
            "await_registration_review",
            Duration::days(2),
            POLICE,
            "registration_approved",
            json!({}),
        ),
    ];
    a.extend(common_end(&employment));

    let mut b = vec![
        act(
            "await_address",
            Duration::hours(5),
            APPLICANT,
            "address_bound",
            json!({"address": "泉州市鲤城区开元街道 8 号"}),
        ),
        act(
            "await_registration",
            Duration::days(2),
            APPLICANT,
            "registration_submitted",
            json!({"materials": study_by_guardian_incomplete}),
        ),
        // The consolidated notice names the missing document; the guardian adds it.
        act(
            "await_registration",
            Duration::days(1),
            APPLICANT,
            "registration_submitted",
            json!({"materials": study_by_guardian}),
        ),
        act(
            "await_registration_review",
            Duration::days(1),
            POLICE,
            "registration_approved",
            json!({}),
        ),
    ];
    b.extend(common_end(&study_by_guardian));

    let mut c = vec![
        act(
            "await_address",
            Duration::hours(1),
            APPLICANT,
            "address_bound",
            json!({"address": "泉州市晋江市青阳街道 3 号"}),
        ),
        act(
            "await_registration",
            Duration::days(1),
            APPLICANT,
            "registration_submitted",
            json!({"materials": residence}),
        ),
        act(
            "await_registration_review",
            Duration::days(3),
            POLICE,
            "registration_rejected",
            json!({"reason": "the house title certificate is illegible"}),
        ),
        act(
            "await_registration",
            Duration::days(2),
            APPLICANT,
            "registration_submitted",
            json!({"materials": residence}),
        ),
        act(
            "await_registration_review",
            Duration::days(1),
            POLICE,
            "registration_approved",
            json!({}),
        ),
    ];
    c.extend(common_end(&residence));

    vec![
        Scenario {
            label: "employment ground, filed by the applicant",
            input: object(json!({
                "applicant_name": "陈明",
                "id_number": "11010519491231002X",
                "phone": "13800000001",
                "wechat_openid": "wx-demo-applicant-a",
                "category": "employment",
                "through_agent": false
            })),
            acts: a,
            expected: "issued",
        },
        Scenario {
            label: "a minor at school, filed by a guardian",
            input: object(json!({
                "applicant_name": "林小雨",
                "id_number": "350502201203150027",
                "phone": "13800000002",
                "wechat_openid": "wx-demo-guardian-b",
                "category": "study",
                "through_agent": true,
                "agent_name": "林海",
                "agent_id_number": "440524188001010014"
            })),
            acts: b,
            expected: "issued",
        },
        Scenario {
            label: "residence ground, rejected at registration and resubmitted",
            input: object(json!({
                "applicant_name": "王芳",
                "id_number": "513101198201130014",
                "phone": "13800000003",
                "wechat_openid": "wx-demo-applicant-c",
                "category": "residence",
                "through_agent": false
            })),
            acts: c,
            expected: "issued",
        },
    ]
}
