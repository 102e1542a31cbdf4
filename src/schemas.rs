//! The JSON Schemas generated from the Rust types into `schemas/`: the config file, the `--workflow-metadata`
//! format, the structured-event format (the JSON after `__WF_EVENT__:`), and each tool's input and output
//! (exactly as `tools/list` declares them). The integration tests fail when a checked-in schema no longer
//! matches; `UPDATE_SCHEMAS=1 cargo test schemas` rewrites them.

use schemars::JsonSchema;
use serde_json::Value;

use crate::catalog::ConfigFile;
use crate::catalog::metadata::WorkflowMetadata;
use crate::engine::WorkflowEvent;
use crate::mcp::schema::{input_schema, output_schema};
use crate::mcp::types::*;

fn document<T: JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    serde_json::to_value(generator.into_root_schema_for::<T>()).expect("a schema is JSON")
}

fn input<T: JsonSchema>() -> Value {
    Value::Object((*input_schema::<T>()).clone())
}

fn output<T: JsonSchema>() -> Value {
    Value::Object((*output_schema::<T>()).clone())
}

/// Every generated schema with its path under `schemas/`.
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("config.schema.json", document::<ConfigFile>()),
        ("workflow-metadata.schema.json", document::<WorkflowMetadata>()),
        ("event.schema.json", document::<WorkflowEvent>()),
        ("tools/list_workflows.input.json", input::<ListWorkflowsInput>()),
        ("tools/list_workflows.output.json", output::<ListWorkflowsOutput>()),
        ("tools/execute_workflow.input.json", input::<ExecuteInput>()),
        ("tools/execute_workflow.output.json", output::<StatusOutput>()),
        ("tools/get_status.input.json", input::<GetStatusInput>()),
        ("tools/get_status.output.json", output::<StatusOutput>()),
        ("tools/get_logs.input.json", input::<GetLogsInput>()),
        ("tools/get_logs.output.json", output::<LogsOutput>()),
        ("tools/cancel_execution.input.json", input::<CancelInput>()),
        ("tools/cancel_execution.output.json", output::<StatusOutput>()),
        ("tools/list_executions.input.json", input::<ListExecutionsInput>()),
        ("tools/list_executions.output.json", output::<ListExecutionsOutput>()),
    ]
}

/// The text a schema file holds: pretty JSON and a final newline.
pub fn render(schema: &Value) -> String {
    let mut s = serde_json::to_string_pretty(schema).expect("a schema is JSON");
    s.push('\n');
    s
}
