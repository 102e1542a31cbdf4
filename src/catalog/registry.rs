//! The runtime catalog: the manifest entries plus what the latest discovery scan found, looked up by name, with a
//! suggestion when a name is unknown.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, RwLock};

use super::discovery::{Discovered, DiscoverySettings, discover};
use super::info::WorkflowInfo;
use super::tasks::{TaskKind, import};
use super::trust::TrustGate;
use super::workflow::WorkflowDef;
use crate::runtime::Placement;

/// The task files a catalog imports, re-read by every scan.
#[derive(Clone, Debug)]
pub struct ImportSettings {
    pub dir: PathBuf,
    pub kinds: Vec<TaskKind>,
    pub placement: Placement,
    /// Whether their executions outlive their session (the config's `outlive_session`).
    pub outlive_session: bool,
}

/// The workflows a server offers: the manifest entries, then what discovery found (replaced as a whole by each
/// scan). Readers never wait for a scan unless they ask to ([`Catalog::settled`]).
#[derive(Debug, Default)]
pub struct Catalog {
    manifest: Vec<Arc<WorkflowDef>>,
    discovery: Option<DiscoverySettings>,
    imports: Option<ImportSettings>,
    /// Set for a config found in the project: nothing runs until the user trusts it.
    gate: Option<TrustGate>,
    /// Why nothing runs now (the gate's refusal), as of the latest check.
    blocked: Mutex<Option<String>>,
    /// The config file in use, if any.
    config: Option<PathBuf>,
    workflows: RwLock<Arc<Vec<Arc<WorkflowDef>>>>,
    scanning: Mutex<bool>,
    scan_done: Condvar,
}

impl Catalog {
    /// A catalog of the manifest entries; with `discovery`, [`Catalog::refresh`] adds discovered workflows.
    pub fn new(manifest: Vec<Arc<WorkflowDef>>, discovery: Option<DiscoverySettings>) -> Self {
        Catalog {
            workflows: RwLock::new(Arc::new(manifest.clone())),
            manifest,
            discovery,
            imports: None,
            gate: None,
            blocked: Mutex::new(None),
            config: None,
            scanning: Mutex::new(false),
            scan_done: Condvar::new(),
        }
    }

    /// The same catalog, reading `imports` on every scan, gated by `gate` when the config needs trust, and
    /// naming `config` as its file.
    pub fn with_source(
        mut self,
        config: Option<PathBuf>,
        imports: Option<ImportSettings>,
        gate: Option<TrustGate>,
    ) -> Self {
        self.blocked = Mutex::new(gate.as_ref().map(TrustGate::refusal));
        self.config = config;
        self.imports = imports;
        self.gate = gate;
        self
    }

    /// The config file in use (`None`: none was given or found).
    pub fn config(&self) -> Option<&PathBuf> {
        self.config.as_ref()
    }

    /// Reads the trust records again (blocking: hashes the gated files).
    pub fn check_trust(&self) {
        let blocked = self.gate.as_ref().filter(|g| !g.is_trusted()).map(TrustGate::refusal);
        *self.blocked.lock().unwrap_or_else(|e| e.into_inner()) = blocked;
    }

    /// Waits for a scan in progress, then checks trust anew (blocking).
    pub fn settle(&self) {
        self.settled();
        self.check_trust();
    }

    /// Why no workflow may run now, with the command that allows them; `None` when they may.
    pub fn blocked(&self) -> Option<String> {
        self.blocked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A workflow as clients see it, with why it cannot run when it cannot.
    pub fn info(&self, def: &WorkflowDef) -> WorkflowInfo {
        WorkflowInfo {
            blocked: self.blocked(),
            ..WorkflowInfo::from(def)
        }
    }

    /// What a listing should tell the agent besides the workflows: how to make a config when there is none,
    /// how to allow one that is not trusted.
    pub fn hint(&self) -> Option<String> {
        if let Some(blocked) = self.blocked() {
            return Some(blocked);
        }
        (self.config.is_none() && self.all().is_empty()).then(|| {
            "no config file found (workflow-mcp.json in the project folder or above it up to the repository root, or \
             ~/.config/workflow-mcp/config.json): ask the user to run `workflow-mcp init` in the project folder, \
             which writes one from its package.json, Makefile, justfile and Taskfile.yml, or to start the server \
             with --config FILE"
                .to_owned()
        })
    }

    /// The current list, in catalog order (manifest entries first, then discovered ones).
    pub fn all(&self) -> Arc<Vec<Arc<WorkflowDef>>> {
        self.workflows.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn get(&self, name: &str) -> Option<Arc<WorkflowDef>> {
        self.all().iter().find(|w| w.name == name).cloned()
    }

    /// Whether a discovery scan is running now.
    pub fn scanning(&self) -> bool {
        *self.scanning.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until no scan is running.
    pub fn settled(&self) {
        let mut running = self.scanning.lock().unwrap_or_else(|e| e.into_inner());
        while *running {
            running = self.scan_done.wait(running).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn begin_scan(&self) {
        let mut running = self.scanning.lock().unwrap_or_else(|e| e.into_inner());
        while *running {
            running = self.scan_done.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running = true;
    }

    fn scan(&self) -> Discovered {
        self.check_trust();
        let mut all = self.manifest.clone();
        if let Some(imports) = &self.imports {
            for kind in &imports.kinds {
                let got = import(*kind, &imports.dir, &imports.placement);
                for w in &got.warnings {
                    tracing::warn!("import: {w}");
                }
                all.extend(
                    got.workflows
                        .into_iter()
                        .map(|w| Arc::new(w.outliving(imports.outlive_session))),
                );
            }
        }
        let Some(settings) = &self.discovery else {
            *self.workflows.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(all);
            return Discovered::default();
        };
        let taken: HashSet<String> = all.iter().map(|w| w.name.clone()).collect();
        let found = discover(settings, &taken);
        for p in &found.problems {
            tracing::warn!("discovery: {p}");
        }
        for w in &found.warnings {
            tracing::warn!("discovery: {w}");
        }
        all.extend(found.workflows.iter().cloned());
        *self.workflows.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(all);
        found
    }

    fn end_scan(&self) {
        *self.scanning.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.scan_done.notify_all();
    }

    /// Rescans the discovery folders (blocking, bounded by the probe timeout) and returns what was found.
    pub fn refresh(&self) -> Discovered {
        self.begin_scan();
        let found = self.scan();
        self.end_scan();
        found
    }

    /// Starts the first scan on its own thread; calls that need the catalog complete wait for it with
    /// [`Catalog::settled`], everything else is served at once.
    pub fn start_initial_scan(self: &Arc<Self>) {
        if self.discovery.is_none() && self.imports.is_none() && self.gate.is_none() {
            return;
        }
        self.begin_scan();
        let catalog = self.clone();
        let spawned = std::thread::Builder::new().name("wf-discovery".into()).spawn(move || {
            catalog.scan();
            catalog.end_scan();
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start discovery");
            self.end_scan();
        }
    }

    /// `unknown workflow "buidl"; known workflows: build, test` — with a suggestion when one is close.
    pub fn unknown_message(&self, name: &str) -> String {
        let all = self.all();
        let names: Vec<&str> = all.iter().map(|w| w.name.as_str()).collect();
        if names.is_empty() {
            return format!("unknown workflow \"{name}\"; this server has no workflows configured");
        }
        let close = names
            .iter()
            .map(|n| (edit_distance(n, name), *n))
            .filter(|(d, n)| *d <= 2.max(n.len() / 3))
            .min();
        let hint = close
            .map(|(_, n)| format!(" (did you mean \"{n}\"?)"))
            .unwrap_or_default();
        format!(
            "unknown workflow \"{name}\"{hint}; known workflows: {}",
            names.join(", ")
        )
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::catalog::workflow::Source;

    fn wf(name: &str) -> Arc<WorkflowDef> {
        Arc::new(WorkflowDef {
            name: name.into(),
            title: None,
            description: String::new(),
            command: vec!["true".into()],
            params: vec![],
            cwd: PathBuf::from("/"),
            env: vec![],
            timeout_ms: None,
            max_concurrent: None,
            source: Source::Manifest,
            placement: Default::default(),
            outlive_session: false,
        })
    }

    #[test]
    fn unknown_workflow_lists_known_ones_and_suggests_a_close_one() {
        let c = Catalog::new(vec![wf("build"), wf("test"), wf("deploy")], None);
        assert_eq!(
            c.unknown_message("buidl"),
            "unknown workflow \"buidl\" (did you mean \"build\"?); known workflows: build, test, deploy"
        );
        assert_eq!(
            c.unknown_message("zzzzzz"),
            "unknown workflow \"zzzzzz\"; known workflows: build, test, deploy"
        );
    }
}
