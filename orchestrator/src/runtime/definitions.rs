//! Deployed definitions: workflow files are validated, stored by content
//! hash and loaded back by id, so a case always runs the version it
//! started on, whatever the files say today.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::calendar::Calendar;
use crate::definition::{self, Diagnostic, Environment, Workflow};
use crate::store::{DefinitionRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    File(#[from] definition::FileError),
    #[error("{} is not valid:{}", path.display(), render(path, diagnostics))]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn render(path: &Path, diagnostics: &[Diagnostic]) -> String {
    let file = path.display().to_string();
    diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("\n  {}", d.render(&file)))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("no deployed definition {0}")]
    Missing(i64),
    #[error("deployed definition {id} ({name} v{version}) no longer loads: {problems}")]
    Unloadable {
        id: i64,
        name: String,
        version: u32,
        problems: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The definitions this orchestrator has loaded, by id, and the definition
/// of each case it has worked on lately.
#[derive(Debug)]
pub struct Registry {
    environment: Environment,
    loaded: Mutex<HashMap<i64, Arc<Workflow>>>,
    of_cases: Mutex<HashMap<String, i64>>,
}

/// Cases whose definition [`Registry::case_definition`] remembers; past
/// this it starts over, so memory stays bounded (about 100 bytes a case)
/// however many cases there are.
const CASES_REMEMBERED: usize = 10_000;

/// Content hash of a workflow file, hex SHA-256.
pub fn content_hash(source: &str) -> String {
    Sha256::digest(source.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Registry {
    pub fn new(calendars: &BTreeMap<String, Calendar>) -> Self {
        Registry {
            environment: Environment::new(calendars.keys().cloned()),
            loaded: Mutex::new(HashMap::new()),
            of_cases: Mutex::new(HashMap::new()),
        }
    }

    /// Validates and stores every workflow file at `path`. Nothing is
    /// stored unless every file is valid.
    pub async fn deploy<S: Store>(
        &self,
        store: &S,
        path: &Path,
        now: DateTime<Utc>,
    ) -> Result<Vec<DefinitionRecord>, DeployError> {
        let mut ready = Vec::new();
        for file in definition::workflow_files(path)? {
            let loaded = definition::load_file(&file, &self.environment)?;
            let Some(workflow) = loaded.loaded.workflow else {
                return Err(DeployError::Invalid {
                    path: file,
                    diagnostics: loaded.loaded.diagnostics,
                });
            };
            let source =
                std::fs::read_to_string(&file).map_err(|source| definition::FileError::Read {
                    path: file.clone(),
                    source,
                })?;
            ready.push((workflow, source));
        }
        let mut records = Vec::new();
        for (workflow, source) in ready {
            let record = store
                .deploy(
                    &workflow.name,
                    workflow.version,
                    &content_hash(&source),
                    &source,
                    now,
                )
                .await?;
            self.lock().insert(record.id, Arc::new(workflow));
            records.push(record);
        }
        Ok(records)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Arc<Workflow>>> {
        self.loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The definition a case runs on, asked of the store once: a case never
    /// changes definition, and asking before every command would add a
    /// round trip to the ten a completion costs (BENCHMARKS.md).
    pub async fn case_definition<S: Store>(
        &self,
        store: &S,
        case_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        if let Some(id) = self.of_cases().get(case_id) {
            return Ok(Some(*id));
        }
        let Some(id) = store.case_definition(case_id).await? else {
            return Ok(None);
        };
        let mut of_cases = self.of_cases();
        if of_cases.len() >= CASES_REMEMBERED {
            of_cases.clear();
        }
        of_cases.insert(case_id.to_owned(), id);
        Ok(Some(id))
    }

    fn of_cases(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.of_cases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The workflow of a deployed definition, loaded from the store once.
    pub async fn get<S: Store>(
        &self,
        store: &S,
        id: i64,
    ) -> Result<Arc<Workflow>, DefinitionError> {
        if let Some(w) = self.lock().get(&id) {
            return Ok(Arc::clone(w));
        }
        let record = store
            .definition(id)
            .await?
            .ok_or(DefinitionError::Missing(id))?;
        let loaded = definition::load(&record.source, &self.environment);
        let workflow =
            loaded
                .workflow
                .map(Arc::new)
                .ok_or_else(|| DefinitionError::Unloadable {
                    id,
                    name: record.name.clone(),
                    version: record.version,
                    problems: loaded
                        .diagnostics
                        .iter()
                        .filter(|d| d.is_error())
                        .map(|d| d.message.clone())
                        .collect::<Vec<_>>()
                        .join("; "),
                })?;
        self.lock().insert(id, Arc::clone(&workflow));
        Ok(workflow)
    }
}
