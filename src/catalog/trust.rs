//! Trust, as direnv does it for `.envrc`: a config file found in a project, and the task files it imports, are
//! the repository's to change, so they run nothing until the user allows them with `workflow-mcp trust`. A
//! record holds a digest of every such file's path and content; any change makes the record stale.
//!
//! Records live in the user's own state folder (`$XDG_STATE_HOME/workflow-mcp/trust/`, else
//! `~/.local/state/workflow-mcp/trust/`; folder 0700, files 0600), one file per config, named by a digest of the
//! config's path, holding the digest of the trusted contents. Nothing here is at a shared path, and a repository
//! cannot write it.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::tasks::TaskKind;

/// The files a config's workflows depend on, trusted together: the config, and the task file of each kind it
/// imports (looked up anew each time, so a task file created later changes the digest too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustGate {
    pub config: PathBuf,
    /// The folder imported task files are read from (the config's).
    pub dir: PathBuf,
    pub imports: Vec<TaskKind>,
}

/// Why a gate could not be checked or recorded.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("no folder for trust records: neither XDG_STATE_HOME nor HOME is set")]
    NoStateDir,
    #[error("cannot write the trust record {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where trust records are kept: the user's state folder, never the config's `state_dir` or `--state-dir` (a
/// repository's config could name those).
pub fn trust_dir() -> Option<PathBuf> {
    let from = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    from("XDG_STATE_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| from("HOME").map(|h| h.join(".local/state")))
        .map(|base| base.join("workflow-mcp").join("trust"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl TrustGate {
    /// The digest of every file's path and current content (a missing file counts as missing, so creating one
    /// changes the digest too).
    fn digest(&self) -> String {
        let mut h = Sha256::new();
        let imported = self
            .imports
            .iter()
            .map(|k| k.file(&self.dir).unwrap_or_else(|| self.dir.join(k.prefix())));
        for f in std::iter::once(self.config.clone()).chain(imported) {
            h.update(f.as_os_str().as_encoded_bytes());
            h.update([0]);
            match std::fs::read(&f) {
                Ok(content) => {
                    h.update((content.len() as u64).to_le_bytes());
                    h.update(&content);
                }
                Err(_) => h.update(b"missing"),
            }
        }
        hex(&h.finalize())
    }

    fn record_path(dir: &Path, config: &Path) -> PathBuf {
        dir.join(hex(&Sha256::digest(config.as_os_str().as_encoded_bytes())))
    }

    /// Whether the files are trusted as they are now (blocking: reads them).
    pub fn is_trusted(&self) -> bool {
        let Some(dir) = trust_dir() else { return false };
        std::fs::read_to_string(Self::record_path(&dir, &self.config)).is_ok_and(|r| r.trim() == self.digest())
    }

    /// The command that trusts this config, as a user types it.
    pub fn command(&self) -> String {
        format!("workflow-mcp trust {}", shell_word(&self.config.to_string_lossy()))
    }

    /// The sentence a listing and a refused execution show.
    pub fn refusal(&self) -> String {
        let changed = trust_dir().is_some_and(|d| Self::record_path(&d, &self.config).exists());
        let why = if changed {
            "changed since it was trusted"
        } else {
            "not trusted yet"
        };
        format!(
            "config {} (or a task file it imports) is {why}, so its workflows do not run; review it, then run: {}",
            self.config.display(),
            self.command()
        )
    }

    /// Records the files as they are now as trusted.
    pub fn trust(&self) -> Result<PathBuf, TrustError> {
        let dir = trust_dir().ok_or(TrustError::NoStateDir)?;
        let path = Self::record_path(&dir, &self.config);
        let write = || -> std::io::Result<()> {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
            // Written aside and renamed: a reader sees the old record or the new one, never half of one.
            let tmp = dir.join(format!(".tmp-{}", std::process::id()));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            writeln!(f, "{}", self.digest())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|source| TrustError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

/// `s` quoted for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:@%=,".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
