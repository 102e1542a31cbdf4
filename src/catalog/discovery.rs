//! Discovery: every executable in the configured `discover` folders is asked `--workflow-metadata` (stdin null, a
//! clean environment, a timeout, output capped, several at once). Valid answers become workflows; anything else
//! is skipped with a sentence saying which executable and why. Nothing outside the configured folders is run: a
//! symlink that points outside its folder is skipped.

use std::collections::{HashSet, VecDeque};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::metadata::WorkflowMetadata;
use super::workflow::WorkflowDef;
use crate::proc::spawn::{CaptureError, helper_command, run_captured};

/// Probes run at once.
const PARALLEL_PROBES: usize = 8;
const METADATA_CAP: usize = 1 << 20;
const STDERR_CAP: usize = 4096;

/// Where and how to discover.
#[derive(Clone, Debug)]
pub struct DiscoverySettings {
    pub dirs: Vec<PathBuf>,
    /// Working directory of discovered workflows (the config file's folder).
    pub cwd: PathBuf,
    /// The clean environment probes run with.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// Where discovered workflows run (the config's `default_runtime`).
    pub placement: crate::runtime::Placement,
    /// Whether their executions outlive their session (the config's `outlive_session`).
    pub outlive_session: bool,
}

/// The outcome of one scan.
#[derive(Debug, Default)]
pub struct Discovered {
    pub workflows: Vec<Arc<WorkflowDef>>,
    /// One sentence per executable (or folder) that was skipped, saying why.
    pub problems: Vec<String>,
    /// Workflows that joined with a caveat (an ignored default).
    pub warnings: Vec<String>,
}

/// The executables of the folders, in folder order then by file name.
fn candidates(settings: &DiscoverySettings, problems: &mut Vec<String>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in &settings.dirs {
        let Ok(root) = dir.canonicalize() else {
            problems.push(format!("discover folder {} does not exist", dir.display()));
            continue;
        };
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(&root) {
            Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
            Err(e) => {
                problems.push(format!("discover folder {} cannot be read: {e}", dir.display()));
                continue;
            }
        };
        entries.sort();
        for path in entries {
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_none_or(|n| n.starts_with('.'));
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if hidden || !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
                continue; // Not an executable (a README, a data file): not a candidate.
            }
            match path.canonicalize() {
                Ok(real) if real.starts_with(&root) => out.push(path),
                Ok(real) => problems.push(format!(
                    "skipped {}: it links to {}, outside the discover folder; only executables inside configured \
                     folders are run",
                    path.display(),
                    real.display()
                )),
                Err(e) => problems.push(format!("skipped {}: {e}", path.display())),
            }
        }
    }
    out
}

/// Why an executable was not taken as a workflow when asked for its metadata.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("it did not answer --workflow-metadata within {} ms (killed)", .0.as_millis())]
    Timeout(Duration),
    #[error(transparent)]
    Capture(CaptureError),
    #[error("it printed more than {METADATA_CAP} bytes for --workflow-metadata")]
    TooLong,
    #[error("it exited with {status} when asked --workflow-metadata{said}")]
    Exited { status: ExitStatus, said: String },
    #[error("it did not print workflow metadata JSON for --workflow-metadata ({reason}); it printed {shown:?}")]
    NotMetadata { reason: serde_json::Error, shown: String },
}

/// Asks one executable for its metadata.
fn probe(exe: &Path, settings: &DiscoverySettings) -> Result<WorkflowMetadata, ProbeError> {
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let mut cmd = helper_command(exe, &["--workflow-metadata"], dir, &settings.env);
    let captured = run_captured(&mut cmd, settings.timeout, METADATA_CAP, STDERR_CAP).map_err(|e| match e {
        CaptureError::Timeout(t) => ProbeError::Timeout(t),
        other => ProbeError::Capture(other),
    })?;
    if captured.stdout_overflow {
        return Err(ProbeError::TooLong);
    }
    if !captured.status.success() {
        let stderr = String::from_utf8_lossy(&captured.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        let said = if first.is_empty() {
            String::new()
        } else {
            format!(": {first}")
        };
        return Err(ProbeError::Exited {
            status: captured.status,
            said,
        });
    }
    let text = String::from_utf8_lossy(&captured.stdout);
    serde_json::from_str::<WorkflowMetadata>(text.trim()).map_err(|reason| ProbeError::NotMetadata {
        reason,
        shown: text.trim().chars().take(60).collect(),
    })
}

/// Scans the folders. `taken` holds the names already in the catalog (manifest entries), which win.
pub fn discover(settings: &DiscoverySettings, taken: &HashSet<String>) -> Discovered {
    let mut found = Discovered::default();
    let exes = candidates(settings, &mut found.problems);
    let queue: Mutex<VecDeque<(usize, PathBuf)>> = Mutex::new(exes.iter().cloned().enumerate().collect());
    let results: Mutex<Vec<Option<Result<WorkflowMetadata, ProbeError>>>> =
        Mutex::new(exes.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_PROBES.min(exes.len()) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                    let Some((i, exe)) = next else { break };
                    let r = probe(&exe, settings);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    let mut names: HashSet<String> = taken.clone();
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    for (exe, result) in exes.iter().zip(results) {
        // The sentence for the skipped list; what the metadata says wrong is already one.
        let converted = result
            .map(|r| r.map_err(|e| e.to_string()))
            .unwrap_or_else(|| Err("it was not asked".into()))
            .and_then(|meta| meta.into_workflow(exe, &settings.cwd))
            .map(|(def, warnings)| {
                let placement = settings.placement.clone();
                (
                    WorkflowDef { placement, ..def }.outliving(settings.outlive_session),
                    warnings,
                )
            });
        match converted {
            Err(why) => found.problems.push(format!("skipped {}: {why}", exe.display())),
            Ok((def, warnings)) => {
                if !names.insert(def.name.clone()) {
                    found.problems.push(format!(
                        "skipped {}: its id \"{}\" is already the name of another workflow",
                        exe.display(),
                        def.name
                    ));
                    continue;
                }
                found
                    .warnings
                    .extend(warnings.into_iter().map(|w| format!("{}: {w}", exe.display())));
                found.workflows.push(Arc::new(def));
            }
        }
    }
    found
}
