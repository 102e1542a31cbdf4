//! A workflow as clients see it: its name, description and params as a JSON Schema an agent can fill in.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::param::params_schema;
use super::{Source, WorkflowDef};

/// One workflow an agent can run.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct WorkflowInfo {
    pub name: String,
    /// Display title, for discovered workflows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub description: String,
    /// JSON Schema of the `params` object execute_workflow takes.
    pub params_schema: Map<String, Value>,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<usize>,
    /// Why it cannot run now and the exact command that allows it (a config found in the project runs nothing
    /// until the user trusts it); absent when it can run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
}

impl From<&WorkflowDef> for WorkflowInfo {
    fn from(w: &WorkflowDef) -> Self {
        WorkflowInfo {
            name: w.name.clone(),
            title: w.title.clone(),
            description: w.description.clone(),
            params_schema: match params_schema(&w.params) {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            source: w.source,
            timeout_ms: w.timeout_ms,
            max_concurrent: w.max_concurrent,
            blocked: None,
        }
    }
}
