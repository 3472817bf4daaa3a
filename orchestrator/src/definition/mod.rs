//! The workflow language: files operators write, checked and resolved into
//! a [`Workflow`] the engine can trust.
//!
//! Loading goes in two stages, as in ripgrep's argument handling: the YAML
//! is parsed into a tree that keeps every value's line and column
//! (`yaml`), then read and resolved field by field (`load`, `steps`,
//! `schedules`) and checked as a graph (`flow`). Every problem found
//! along the way is collected, so an operator sees all of them at once.
//!
//! - [`model`]: the resolved workflow the engine runs.
//! - [`expr`]: the small typed language of conditions and values.
//! - [`template`]: message templates with `{{ reference }}` placeholders.
//! - [`period`]: durations and working-day counts.
//! - [`diagnostic`]: problems, with stable codes and positions.
//! - [`graph`]: Mermaid and Graphviz renderings.
//! - [`schema`]: the JSON Schema editors use to complete and flag keys.

pub mod diagnostic;
pub mod expr;
mod flow;
pub mod follow_ups;
pub mod graph;
mod load;
mod message;
pub mod model;
pub mod period;
mod schedules;
pub mod schema;
mod steps;
pub mod template;
pub(crate) mod yaml;

use std::path::{Path, PathBuf};

pub use diagnostic::{Code, Diagnostic, Pos, Severity};
pub use load::{Environment, Loaded, load};
pub use model::Workflow;

/// A workflow file that was loaded, with its path.
#[derive(Debug)]
pub struct LoadedFile {
    pub path: PathBuf,
    pub loaded: Loaded,
}

/// Errors reading workflow files from disk (as opposed to problems in them).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a workflow file: expected a `.yaml` or `.yml` file or a directory of them"
    )]
    NotWorkflow { path: PathBuf },
}

/// Whether a path names a YAML file.
pub fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// The workflow files at `path`: the file itself, or the YAML files
/// directly inside a directory (its `calendars/` folder holds calendars,
/// not workflows), in name order.
pub fn workflow_files(path: &Path) -> Result<Vec<PathBuf>, FileError> {
    let read_err = |source| FileError::Read {
        path: path.to_owned(),
        source,
    };
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(read_err)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && is_yaml(p))
            .collect();
        files.sort();
        Ok(files)
    } else if is_yaml(path) {
        Ok(vec![path.to_owned()])
    } else if path.exists() {
        Err(FileError::NotWorkflow {
            path: path.to_owned(),
        })
    } else {
        Err(read_err(std::io::Error::from(std::io::ErrorKind::NotFound)))
    }
}

/// Reads and loads one workflow file.
pub fn load_file(path: &Path, env: &Environment) -> Result<LoadedFile, FileError> {
    let source = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(LoadedFile {
        path: path.to_owned(),
        loaded: load(&source, env),
    })
}
