//! Fixtures shared by the crate's tests: the shipped residence-permit
//! workflow, its calendars, contact addresses and an applicant's input.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::calendar::{self, Calendar};
use crate::definition::{self, Environment, Workflow};
use crate::engine::{Context, Data};

/// The residence-permit workflow and the calendars it counts on.
pub fn fixtures() -> &'static (Workflow, BTreeMap<String, Calendar>) {
    static FIXTURES: OnceLock<(Workflow, BTreeMap<String, Calendar>)> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let calendars: BTreeMap<String, Calendar> =
            calendar::load_dir(&repo.join("workflows/calendars"))
                .expect("calendars")
                .into_iter()
                .map(|c| (c.name().to_owned(), c))
                .collect();
        let env = Environment::new(calendars.keys().cloned());
        let file = definition::load_file(&repo.join("workflows/residence-permit.yaml"), &env)
            .expect("read the workflow");
        (file.loaded.workflow.expect("a valid workflow"), calendars)
    })
}

/// Addresses of the workflow's contacts.
pub fn contacts() -> &'static BTreeMap<String, String> {
    static CONTACTS: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    CONTACTS.get_or_init(|| {
        [
            ("station", "station@example.test"),
            ("supervisor", "supervisor@example.test"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    })
}

/// A decision context on the fixtures at `now`.
pub fn ctx(now: DateTime<Utc>) -> Context<'static> {
    let (workflow, calendars) = fixtures();
    Context {
        workflow,
        calendars,
        contacts: contacts(),
        now,
    }
}

/// An applicant's input, filed by the applicant or through an agent.
pub fn input(through_agent: bool) -> Data {
    let mut input = json!({
        "applicant_name": "张三",
        "id_number": "11010519491231002X",
        "phone": "13800000000",
        "wechat_openid": "o-applicant",
        "category": "employment",
        "through_agent": through_agent,
    });
    if through_agent {
        input["agent_name"] = json!("李四");
        input["agent_id_number"] = json!("440524188001010014");
    }
    input.as_object().cloned().unwrap_or_default()
}
