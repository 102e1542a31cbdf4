//! The checked-in schemas in `schemas/` match the code, and the live server declares exactly them.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};

use crate::util::Server;

fn schema_files(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            schema_files(&p, base, out);
        } else {
            out.insert(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
        }
    }
}

#[test]
fn checked_in_schemas_match_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let generated = workflow_mcp::schemas::all();
    let mut stale = Vec::new();
    for (path, schema) in &generated {
        let file = dir.join(path);
        let text = workflow_mcp::schemas::render(schema);
        if update {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, &text).unwrap();
        } else if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
            stale.push(path.to_string());
        }
    }
    let mut on_disk = BTreeSet::new();
    schema_files(&dir, &dir, &mut on_disk);
    let expected: BTreeSet<String> = generated.iter().map(|(p, _)| p.to_string()).collect();
    let extra: Vec<&String> = on_disk.difference(&expected).collect();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "schemas/ is out of date (changed: {stale:?}, no longer generated: {extra:?}); \
         run `UPDATE_SCHEMAS=1 cargo test schemas` and commit the result"
    );
}

#[tokio::test]
async fn the_server_declares_the_checked_in_tool_schemas() {
    let s = Server::start("schemas", json!({"workflows": []})).await;
    let tools = s.client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 6);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/tools");
    for tool in tools {
        let read = |kind: &str| -> Value {
            let path = dir.join(format!("{}.{kind}.json", tool.name));
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
        };
        assert_eq!(
            Value::Object((*tool.input_schema).clone()),
            read("input"),
            "{} input",
            tool.name
        );
        let output = tool
            .output_schema
            .as_ref()
            .unwrap_or_else(|| panic!("{} has an output schema", tool.name));
        assert_eq!(
            Value::Object((**output).clone()),
            read("output"),
            "{} output",
            tool.name
        );
    }
}

/// The `format`s JSON Schema 2020-12 defines (its format-annotation vocabulary). A validator meeting any other
/// (schemars' `uint64`, `uint32`, `int32`, `double`, …) warns: Claude Code printed 214 such warnings before a
/// server's status line.
const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

fn nonstandard_formats(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(f) = m.get("format")
                && !f.as_str().is_some_and(|f| STANDARD_FORMATS.contains(&f))
            {
                out.push(format!("{f} at {at}"));
            }
            for (k, c) in m {
                nonstandard_formats(c, &format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                nonstandard_formats(c, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn no_tool_schema_carries_a_format_validators_do_not_know() {
    let s = Server::start("schema-formats", json!({"workflows": []})).await;
    let mut found = Vec::new();
    for tool in s.client.list_all_tools().await.unwrap() {
        let input = Value::Object((*tool.input_schema).clone());
        nonstandard_formats(&input, &format!("{} input #", tool.name), &mut found);
        let output = tool
            .output_schema
            .as_ref()
            .unwrap_or_else(|| panic!("{} has an output schema", tool.name));
        let output = Value::Object((**output).clone());
        nonstandard_formats(&output, &format!("{} output #", tool.name), &mut found);
    }
    assert!(
        found.is_empty(),
        "formats a JSON Schema validator does not know: {found:#?}"
    );
}
