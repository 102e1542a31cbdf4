//! The metadata a self-describing executable prints for `--workflow-metadata` (the workflow-manager format),
//! and how it becomes a workflow definition with typed params.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::glob::glob_regex;
use super::names::{PARAM_NAME_RULE, valid_param_name, valid_workflow_name};
use super::param::{Delivery, Param, ParamType};
use super::workflow::{Source, WorkflowDef};

/// What `<exe> --workflow-metadata` prints: one JSON object on stdout.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct WorkflowMetadata {
    /// The catalog name agents call the workflow by.
    pub id: String,
    /// Display title.
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub fields: Vec<FieldMetadata>,
}

/// One input of a self-describing workflow.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct FieldMetadata {
    /// The param name agents pass the value under: 1-64 letters, digits, `_`, `-`, `.`.
    pub name: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub description: String,
    /// The option the value is passed with (`cli_arg value`); empty passes the value as a positional argument.
    #[serde(default)]
    pub cli_arg: String,
    #[serde(default)]
    pub required: bool,
    /// The default, usually written as a string (`"3"`); converted to the field's type.
    #[serde(default)]
    pub default: Option<Value>,
    pub field_type: FieldType,
}

/// The type of a field, tagged by `type`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FieldType {
    /// Free text: a string.
    Text,
    /// A number with optional bounds.
    Number {
        #[serde(default)]
        min: Option<f64>,
        #[serde(default)]
        max: Option<f64>,
    },
    /// A path; `pattern` is a glob the path (or its file name) must match, e.g. `*.yaml`: `*` is any run of
    /// characters but `/`, `?` one character but `/`, every other character itself.
    FilePath {
        #[serde(default)]
        pattern: Option<String>,
    },
    /// One of a list of strings.
    Select { options: Vec<String> },
    /// A phase index, 0 to `total_phases` - 1.
    PhaseSelector { total_phases: u32 },
    /// A state file written by an earlier phase; `pattern` is a glob as for `file_path`.
    StateFile {
        #[serde(default)]
        pattern: Option<String>,
        #[serde(default)]
        phase: Option<u32>,
    },
}

fn field_param(f: &FieldMetadata) -> Result<(Param, Option<String>), String> {
    if !valid_param_name(&f.name) {
        return Err(format!(
            "field {:?}: the name must be {PARAM_NAME_RULE} (agents pass it as a JSON key)",
            f.name
        ));
    }
    let description = match (f.label.is_empty(), f.description.is_empty()) {
        (false, false) => format!("{}: {}", f.label, f.description),
        (false, true) => f.label.clone(),
        _ => f.description.clone(),
    };
    let delivery = if f.cli_arg.is_empty() {
        Delivery::Positional
    } else {
        Delivery::Arg(f.cli_arg.clone())
    };
    let mut p = Param {
        description,
        required: f.required,
        ..Param::new(&f.name, ParamType::String, delivery)
    };
    match &f.field_type {
        FieldType::Text => {}
        FieldType::Number { min, max } => {
            p.kind = ParamType::Number;
            p.minimum = *min;
            p.maximum = *max;
            if let (Some(lo), Some(hi)) = (min, max)
                && lo > hi
            {
                return Err(format!("field \"{}\": min {lo} is greater than max {hi}", f.name));
            }
        }
        FieldType::FilePath { pattern } | FieldType::StateFile { pattern, .. } => {
            p.pattern = pattern
                .as_deref()
                .map(glob_regex)
                .transpose()
                .map_err(|e| format!("field \"{}\": {e}", f.name))?;
        }
        FieldType::Select { options } => {
            if options.is_empty() {
                return Err(format!("field \"{}\": a select needs at least one option", f.name));
            }
            p.allowed = Some(options.iter().map(|o| Value::String(o.clone())).collect());
        }
        FieldType::PhaseSelector { total_phases } => {
            if *total_phases == 0 {
                return Err(format!("field \"{}\": total_phases must be at least 1", f.name));
            }
            p.kind = ParamType::Integer;
            p.minimum = Some(0.0);
            p.maximum = Some(f64::from(total_phases - 1));
        }
    }
    // A default that does not fit is dropped (with a warning) rather than refusing a workflow that works.
    let mut warning = None;
    if let Some(d) = f.default.as_ref().filter(|d| !d.is_null() && d.as_str() != Some("")) {
        match p.check(d) {
            Ok(v) => p.default = Some(v),
            Err(e) => warning = Some(format!("field \"{}\": default ignored: {e}", f.name)),
        }
    }
    Ok((p, warning))
}

impl WorkflowMetadata {
    /// The workflow this metadata describes, run as `program` in `cwd`; also returns warnings (ignored defaults).
    pub fn into_workflow(self, program: &Path, cwd: &Path) -> Result<(WorkflowDef, Vec<String>), String> {
        if !valid_workflow_name(&self.id) {
            return Err(format!(
                "its id \"{}\" is not a usable workflow name (1-64 letters, digits, '_', '-', '.')",
                self.id
            ));
        }
        let mut params = Vec::new();
        let mut warnings = Vec::new();
        for f in &self.fields {
            if params.iter().any(|p: &Param| p.name == f.name) {
                return Err(format!("field \"{}\" appears twice", f.name));
            }
            let (p, warning) = field_param(f)?;
            params.push(p);
            warnings.extend(warning);
        }
        let def = WorkflowDef {
            name: self.id,
            title: Some(self.name),
            description: self.description,
            command: vec![program.to_string_lossy().into_owned()],
            params,
            cwd: cwd.to_owned(),
            env: Vec::new(),
            timeout_ms: None,
            max_concurrent: None,
            source: Source::Discovered,
            placement: Default::default(),
            outlive_session: false,
        };
        Ok((def, warnings))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::catalog::param::{params_schema, resolve};

    fn sample() -> WorkflowDef {
        let meta: WorkflowMetadata = serde_json::from_value(json!({
            "id": "demo", "name": "Demo", "description": "d",
            "fields": [
                {"name": "repeat", "label": "Repeat", "cli_arg": "--repeat", "required": true, "default": "3",
                 "field_type": {"type": "number", "min": 1, "max": 10}},
                {"name": "topic", "cli_arg": "--topic", "field_type": {"type": "text"}},
                {"name": "input", "cli_arg": "--input", "field_type": {"type": "file_path", "pattern": "*.yaml"}},
                {"name": "mode", "cli_arg": "--mode", "default": "fast",
                 "field_type": {"type": "select", "options": ["fast", "slow"]}},
                {"name": "phase", "cli_arg": "--phase", "field_type": {"type": "phase_selector", "total_phases": 5}},
                {"name": "state", "cli_arg": "--state", "field_type": {"type": "state_file", "pattern": "analysis_*.yaml", "phase": 1}}
            ]
        }))
        .unwrap();
        meta.into_workflow(Path::new("/wf/demo"), Path::new("/")).unwrap().0
    }

    #[test]
    fn field_types_become_json_schema_an_agent_can_fill() {
        let s = params_schema(&sample().params);
        let props = &s["properties"];
        assert_eq!(props["repeat"]["type"], "number");
        assert_eq!(
            (props["repeat"]["minimum"].clone(), props["repeat"]["maximum"].clone()),
            (json!(1), json!(10))
        );
        assert_eq!(
            props["repeat"]["default"],
            json!(3),
            "a string default becomes the field's type"
        );
        assert_eq!(props["topic"]["type"], "string");
        assert_eq!(props["input"]["pattern"], "(^|/)[^/]*\\.yaml$");
        assert_eq!(props["mode"]["enum"], json!(["fast", "slow"]));
        assert_eq!(props["phase"]["type"], "integer");
        assert_eq!(
            (props["phase"]["minimum"].clone(), props["phase"]["maximum"].clone()),
            (json!(0), json!(4))
        );
        assert_eq!(props["state"]["type"], "string");
        assert_eq!(
            s["required"],
            json!([]),
            "a required field with a default can be left out"
        );
    }

    #[test]
    fn values_reach_the_executable_as_cli_arg_value() {
        let def = sample();
        let given =
            json!({"repeat": 5.0, "topic": "x y", "input": "conf/a.yaml", "phase": 2, "state": "analysis_1.yaml"});
        let inv = resolve(&def.name, &def.params, given.as_object().unwrap()).unwrap();
        assert_eq!(
            inv.args,
            [
                "--repeat",
                "5",
                "--topic",
                "x y",
                "--input",
                "conf/a.yaml",
                "--mode",
                "fast",
                "--phase",
                "2",
                "--state",
                "analysis_1.yaml"
            ]
        );
        let bad = json!({"input": "a.json"});
        let err = resolve(&def.name, &def.params, bad.as_object().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("param \"input\" must be a string matching"), "{err}");
        let bad = json!({"phase": 5});
        assert_eq!(
            resolve(&def.name, &def.params, bad.as_object().unwrap())
                .unwrap_err()
                .to_string(),
            "param \"phase\" must be an integer between 0 and 4, got 5"
        );
    }
}
