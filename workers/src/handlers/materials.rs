//! `materials.check`: compares what the applicant submitted with the
//! workflow's materials rules and reports every missing item at once.

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use super::{Handler, text_param};
use crate::contract::{Job, Materials, Outcome};

#[derive(Debug, Default, Clone, Copy)]
pub struct MaterialsCheck;

impl Handler for MaterialsCheck {
    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Outcome> {
        Box::pin(async move { check(job).unwrap_or_else(|failure| failure) })
    }
}

fn check(job: &Job) -> Result<Outcome, Outcome> {
    let invalid = |what: &str| Outcome::permanent("invalid_request", what.to_owned());
    let rules: Materials = job
        .params
        .get("rules")
        .cloned()
        .and_then(|r| serde_json::from_value(r).ok())
        .ok_or_else(|| invalid("the job carries no readable materials rules"))?;
    let category = text_param(job, "category")?;
    let through_agent = job
        .params
        .get("through_agent")
        .and_then(Value::as_bool)
        .ok_or_else(|| invalid("parameter `through_agent` must be true or false"))?;
    let submitted: Vec<String> = match job.params.get("submitted") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(_) => {
            return Err(invalid(
                "parameter `submitted` must be a list of document ids",
            ));
        }
    };
    let missing = rules.missing(category, through_agent, &submitted);
    if missing.is_empty() {
        return Ok(Outcome::succeeded("complete"));
    }
    let titles: Vec<&str> = missing.iter().map(|r| r.title.as_str()).collect();
    let mut output = Map::new();
    output.insert("missing".to_owned(), Value::String(titles.join("; ")));
    Ok(Outcome::Succeeded {
        outcome: "incomplete".to_owned(),
        output,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::handlers::tests::job;

    fn rules() -> Value {
        json!({
            "documents": [],
            "always": [{"title": "Photo", "one_of": ["photo"]}, {"title": "Proof of residence", "one_of": ["lease", "deed"]}],
            "by_category": {"study": [{"title": "Proof of study", "one_of": ["student_card"]}]},
            "through_agent": [{"title": "Agent's ID", "one_of": ["agent_id"]}]
        })
    }

    #[tokio::test]
    async fn reports_all_missing_items_in_one_notice() {
        let j = job(
            "materials.check",
            json!({"rules": rules(), "category": "study", "through_agent": true, "submitted": ["lease"]}),
        );
        let Outcome::Succeeded { outcome, output } = MaterialsCheck.run(&j).await else {
            panic!("expected an outcome");
        };
        assert_eq!(outcome, "incomplete");
        assert_eq!(output["missing"], "Photo; Proof of study; Agent's ID");
        let j = job(
            "materials.check",
            json!({"rules": rules(), "category": "study", "through_agent": false, "submitted": ["photo", "deed", "student_card"]}),
        );
        assert_eq!(MaterialsCheck.run(&j).await, Outcome::succeeded("complete"));
    }

    #[tokio::test]
    async fn a_job_without_rules_fails_permanently() {
        let j = job(
            "materials.check",
            json!({"category": "study", "through_agent": false, "submitted": []}),
        );
        assert!(matches!(
            MaterialsCheck.run(&j).await,
            Outcome::Failed {
                retryable: false,
                ..
            }
        ));
    }
}
