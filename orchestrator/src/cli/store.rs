//! Opening the store a command names: `sqlite:` (the embedded default) or
//! `postgres:`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use docket::privacy::DataKeys;
use docket::store::postgres::PgStore;
use docket::store::sqlite::SqliteStore;

/// The database shared by the commands that touch cases.
#[derive(Debug, clap::Args)]
pub struct DatabaseArgs {
    /// `sqlite:PATH` (created if missing) or `postgres://…`.
    #[arg(
        long,
        env = "DOCKET_DATABASE_URL",
        default_value = "sqlite:docket.sqlite"
    )]
    pub database: String,
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// Where the master keys for personal data come from.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KeyArgs {
    /// Master keys that wrap each case's data key: `ID:BASE64KEY[,…]`,
    /// newest first (`orchestrator keys generate`). Needed with PostgreSQL;
    /// a SQLite file without them uses `FILE.keys` beside it, created on
    /// first use.
    #[arg(long, env = "DOCKET_DATA_KEYS", hide_env_values = true)]
    pub data_keys: Option<String>,
    /// A file holding the master keys, as `--data-keys` takes them.
    #[arg(long, env = "DOCKET_DATA_KEYS_FILE", conflicts_with = "data_keys")]
    pub data_keys_file: Option<PathBuf>,
}

impl KeyArgs {
    /// The master keys for the database at `url`.
    pub fn resolve(&self, url: &str) -> anyhow::Result<DataKeys> {
        if let Some(text) = &self.data_keys {
            return DataKeys::parse(text).context("--data-keys (DOCKET_DATA_KEYS)");
        }
        if let Some(path) = &self.data_keys_file {
            return read_keys(path);
        }
        match sqlite_file(url) {
            Some(db) => {
                let mut path = db.into_os_string();
                path.push(".keys");
                keys_beside(Path::new(&path))
            }
            None if url.starts_with("sqlite:") => Ok(DataKeys::ephemeral()),
            // Commands that touch no personal data (audit, migrate) run
            // without; the others fail naming the setting.
            None => Ok(DataKeys::unconfigured()),
        }
    }
}

/// The file of a `sqlite:` URL; `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| PathBuf::from(path))
}

fn read_keys(path: &Path) -> anyhow::Result<DataKeys> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the data keys in {}", path.display()))?;
    DataKeys::parse(text.trim()).with_context(|| format!("the data keys in {}", path.display()))
}

/// The key file beside an embedded database, created (readable by its
/// owner only) the first time. It is written whole under a name of this
/// process's own and then linked into place, so a process that finds it
/// finds it complete, and of two processes creating it at once one wins.
fn keys_beside(path: &Path) -> anyhow::Result<DataKeys> {
    if path.exists() {
        return read_keys(path);
    }
    let mut own = path.as_os_str().to_owned();
    own.push(format!(".{}", std::process::id()));
    let own = PathBuf::from(own);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&own).and_then(|mut file| {
        file.write_all(format!("{}\n", DataKeys::generate("k1")).as_bytes())?;
        file.sync_all()
    });
    let linked = written.and_then(|()| match std::fs::hard_link(&own, path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        // Linked, or another process linked its own first: either way the
        // file in place is whole.
        _ => Ok(()),
    });
    let _ = std::fs::remove_file(&own);
    linked.with_context(|| format!("creating the data keys in {}", path.display()))?;
    read_keys(path)
}

#[derive(Debug)]
pub enum Backend {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

impl DatabaseArgs {
    pub async fn open(&self) -> anyhow::Result<Backend> {
        let url = self.database.as_str();
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let keys = self.keys.resolve(url)?;
            let store = PgStore::connect(url)
                .await
                .context("connecting to PostgreSQL")?
                .with_data_keys(keys);
            Ok(Backend::Postgres(Arc::new(store)))
        } else if url.starts_with("sqlite:") {
            let keys = self.keys.resolve(url)?;
            let store = SqliteStore::open(url)
                .await
                .with_context(|| format!("opening {url}"))?
                .with_data_keys(keys);
            Ok(Backend::Sqlite(Arc::new(store)))
        } else {
            anyhow::bail!("--database must start with `sqlite:` or `postgres://`, not `{url}`")
        }
    }
}

/// Runs `$body` with `$store` bound to whichever store was opened.
macro_rules! with_store {
    ($backend:expr, $store:ident => $body:expr) => {
        match $backend {
            $crate::cli::store::Backend::Sqlite($store) => $body,
            $crate::cli::store::Backend::Postgres($store) => $body,
        }
    };
}
pub(crate) use with_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_embedded_database_keeps_its_keys_beside_it() {
        assert_eq!(
            sqlite_file("sqlite:docket.sqlite"),
            Some("docket.sqlite".into())
        );
        assert_eq!(
            sqlite_file("sqlite:///var/d.db?mode=rwc"),
            Some("/var/d.db".into())
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://h/db"), None);

        let dir = std::env::temp_dir().join(format!("docket-keys-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let db = format!("sqlite:{}", dir.join("a.sqlite").display());
        let args = KeyArgs::default();
        // The second process reads what the first created.
        let wrapped = args
            .resolve(&db)
            .ok()
            .and_then(|k| k.new_case_key("c").ok())
            .map(|(_, w)| w);
        let again = args.resolve(&db);
        assert!(matches!(
            (wrapped, again),
            (Some(w), Ok(k)) if k.open_case_key("c", &w).is_ok()
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("a.sqlite.keys")).map(|m| m.permissions().mode());
            assert_eq!(mode.ok().map(|m| m & 0o777), Some(0o600));
        }
        let none = args.resolve("postgres://127.0.0.1/x");
        assert!(none.is_ok_and(|k| k.current().is_none()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
