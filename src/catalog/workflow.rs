//! A workflow definition — the one internal form both manifest entries and discovered executables become — and
//! the catalog that holds them.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::param::Param;

/// Where a workflow came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// An entry of the config file.
    Manifest,
    /// A self-describing executable found in a `discover` folder.
    Discovered,
}

/// Everything needed to start a workflow.
#[derive(Clone, Debug)]
pub struct WorkflowDef {
    pub name: String,
    /// Display title (a discovered workflow's metadata `name`).
    pub title: Option<String>,
    pub description: String,
    /// The argv before the params' arguments.
    pub command: Vec<String>,
    pub params: Vec<Param>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub timeout_ms: Option<u64>,
    pub max_concurrent: Option<usize>,
    pub source: Source,
}

/// The workflows a server offers, replaced as a whole when discovery runs again.
#[derive(Debug, Default)]
pub struct Catalog {
    workflows: RwLock<Arc<Vec<Arc<WorkflowDef>>>>,
}

impl Catalog {
    pub fn new(workflows: Vec<Arc<WorkflowDef>>) -> Self {
        Catalog {
            workflows: RwLock::new(Arc::new(workflows)),
        }
    }

    /// The current list, in catalog order (manifest entries first, then discovered ones by name).
    pub fn all(&self) -> Arc<Vec<Arc<WorkflowDef>>> {
        self.workflows.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn get(&self, name: &str) -> Option<Arc<WorkflowDef>> {
        self.all().iter().find(|w| w.name == name).cloned()
    }

    pub fn replace(&self, workflows: Vec<Arc<WorkflowDef>>) {
        *self.workflows.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(workflows);
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
    use super::*;

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
        })
    }

    #[test]
    fn unknown_workflow_lists_known_ones_and_suggests_a_close_one() {
        let c = Catalog::new(vec![wf("build"), wf("test"), wf("deploy")]);
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
