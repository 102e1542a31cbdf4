//! Tool schemas every client can take. Inputs: subschemas inlined, optional fields simply absent (no
//! `["integer","null"]` unions, no `anyOf` with null, no `default: null`), enums as plain `enum` lists and no
//! integer `format`s — Gemini's function-declaration dialect rejects or drops what it does not know, and the MCP
//! Inspector's strict mode flags type unions. Outputs: exact for what is sent — a field left out when it does
//! not apply is optional and never null. Neither carries schemars' numeric `format`s (`uint64`, `int32`,
//! `double`, …): JSON Schema defines none of them, and a client validating against them warns for each one
//! (Claude Code printed 214 warnings); `minimum: 0` already says what `uint` meant.

use std::sync::Arc;

use rmcp::model::JsonObject;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

fn generate<T: JsonSchema>(settings: SchemaSettings) -> Map<String, Value> {
    let schema = settings.into_generator().into_root_schema_for::<T>();
    match serde_json::to_value(schema) {
        Ok(Value::Object(mut root)) => {
            // The wrapper type's own name and doc are noise to a model.
            root.remove("title");
            root.remove("description");
            root
        }
        other => panic!(
            "the schema of {} is not an object: {other:?}",
            std::any::type_name::<T>()
        ),
    }
}

/// The input schema of a tool whose arguments deserialize into `T`.
pub fn input_schema<T: JsonSchema>() -> Arc<JsonObject> {
    let mut settings = SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    let mut root = generate::<T>(settings);
    root.remove("$defs");
    let mut value = Value::Object(root);
    simplify_input(&mut value);
    match value {
        Value::Object(root) => Arc::new(root),
        _ => unreachable!("simplifying keeps an object an object"),
    }
}

/// The output schema of a tool whose structured result serializes from `T`.
pub fn output_schema<T: JsonSchema>() -> Arc<JsonObject> {
    let mut value = Value::Object(generate::<T>(SchemaSettings::draft2020_12().for_serialize()));
    strip_nulls_of_optional_fields(&mut value);
    match value {
        Value::Object(root) => Arc::new(root),
        _ => unreachable!("stripping keeps an object an object"),
    }
}

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null")
}

/// Removes `null` from a schema's type union or `anyOf`, merging a single remaining branch into the schema.
fn drop_null(schema: &mut Map<String, Value>) {
    if let Some(Value::Array(values)) = schema.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    if let Some(Value::Array(types)) = schema.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            schema.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(branches)) = schema.get_mut("anyOf")
        && branches.iter().any(is_null_schema)
    {
        branches.retain(|b| !is_null_schema(b));
        if branches.len() == 1
            && let Some(Value::Object(only)) = branches.pop()
        {
            schema.remove("anyOf");
            for (k, v) in only {
                schema.entry(k).or_insert(v);
            }
        }
    }
}

/// The strings a `{"const": ..}` or `{"enum": [..]}` branch allows; `None` for any other branch.
fn string_constants(branch: &Value) -> Option<Vec<Value>> {
    match (branch.get("const"), branch.get("enum")) {
        (Some(c), None) if c.is_string() => Some(vec![c.clone()]),
        (None, Some(Value::Array(e))) if e.iter().all(Value::is_string) => Some(e.clone()),
        _ => None,
    }
}

/// A `oneOf` of documented constants (an enum with a doc per variant) becomes a plain `enum`: the same values,
/// and validators check it without building an error per branch.
fn plain_enum(schema: &mut Map<String, Value>) {
    if let Some(Value::Array(branches)) = schema.get("oneOf")
        && let Some(values) = branches.iter().map(string_constants).collect::<Option<Vec<_>>>()
    {
        schema.remove("oneOf");
        schema.insert("type".into(), Value::from("string"));
        schema.insert("enum".into(), Value::Array(values.concat()));
    }
}

/// Removes schemars' numeric `format` (`uint64`, `int32`, `double`, …) from a number or integer schema, also
/// one whose type is a union with `null`.
fn drop_numeric_format(schema: &mut Map<String, Value>) {
    let numeric = |t: &Value| matches!(t.as_str(), Some("integer" | "number"));
    let is_numeric = match schema.get("type") {
        Some(Value::Array(types)) => types.iter().any(numeric),
        Some(t) => numeric(t),
        None => false,
    };
    if is_numeric {
        schema.remove("format");
    }
}

/// Doc comments wrap at 120 columns; a description is one paragraph.
fn unwrap_description(schema: &mut Map<String, Value>) {
    if let Some(Value::String(d)) = schema.get_mut("description")
        && d.contains('\n')
    {
        *d = d.replace('\n', " ");
    }
}

fn simplify_input(value: &mut Value) {
    match value {
        Value::Object(schema) => {
            drop_null(schema);
            unwrap_description(schema);
            if schema.get("default") == Some(&Value::Null) {
                schema.remove("default");
            }
            drop_numeric_format(schema);
            plain_enum(schema);
            schema.values_mut().for_each(simplify_input);
        }
        Value::Array(items) => items.iter_mut().for_each(simplify_input),
        _ => {}
    }
}

fn strip_nulls_of_optional_fields(value: &mut Value) {
    match value {
        Value::Object(schema) => {
            let required: Vec<String> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            unwrap_description(schema);
            drop_numeric_format(schema);
            plain_enum(schema);
            if let Some(Value::Object(props)) = schema.get_mut("properties") {
                for (name, prop) in props.iter_mut() {
                    if !required.contains(name)
                        && let Value::Object(p) = prop
                    {
                        drop_null(p);
                    }
                }
            }
            schema.values_mut().for_each(strip_nulls_of_optional_fields);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls_of_optional_fields),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(v: &Value, f: &mut impl FnMut(&Map<String, Value>)) {
        match v {
            Value::Object(m) => {
                f(m);
                m.values().for_each(|c| walk(c, f));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, f)),
            _ => {}
        }
    }

    #[test]
    fn no_input_schema_has_a_type_union_a_null_or_a_reference() {
        use crate::mcp::types::*;
        for schema in [
            input_schema::<ListWorkflowsInput>(),
            input_schema::<ExecuteInput>(),
            input_schema::<GetStatusInput>(),
            input_schema::<GetLogsInput>(),
            input_schema::<CancelInput>(),
            input_schema::<ListExecutionsInput>(),
        ] {
            let v = Value::Object((*schema).clone());
            walk(&v, &mut |m| {
                assert!(!m.get("type").is_some_and(Value::is_array), "type union in {v}");
                assert!(
                    !m.contains_key("anyOf") && !m.contains_key("oneOf"),
                    "anyOf/oneOf in {v}"
                );
                assert!(!m.contains_key("$ref"), "reference in {v}");
                assert!(m.get("default") != Some(&Value::Null), "default null in {v}");
                let enum_has_null = m
                    .get("enum")
                    .and_then(Value::as_array)
                    .is_some_and(|e| e.contains(&Value::Null));
                assert!(!enum_has_null, "null in an enum in {v}");
            });
        }
    }
}
