//! The catalog: discovery of self-describing executables, field types, structured events and progress, and the
//! human CLI (`list`, `check`, `run`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::util::{Server, TestDir, fake, records, server_bin, texts, wf, write_config};

/// Writes an executable script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A self-describing script: prints `metadata` for --workflow-metadata, else its arguments one per line.
fn self_describing(dir: &Path, name: &str, metadata: &Value) -> PathBuf {
    let body = format!(
        "if [ \"$1\" = --workflow-metadata ]; then\ncat <<'JSON'\n{metadata}\nJSON\nexit 0\nfi\nfor a in \"$@\"; do echo \"arg: $a\"; done"
    );
    script(dir, name, &body)
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

#[tokio::test]
async fn discovery_lists_only_valid_executables_and_says_why_the_others_were_skipped() {
    let tools = TestDir::new("discover-dir");
    let d = &tools.path;
    self_describing(
        d,
        "valid",
        &json!({"id": "good", "name": "Good one", "description": "works", "fields": []}),
    );
    script(d, "hanging", &format!("exec {} hold", fake()));
    script(d, "failing", "echo 'no metadata here' >&2\nexit 3");
    script(d, "garbage", "echo hello");
    self_describing(d, "dup", &json!({"id": "manual", "name": "Dup", "fields": []}));
    std::fs::write(d.join("notes.txt"), "not an executable").unwrap();
    std::os::unix::fs::symlink("/bin/true", d.join("outside")).unwrap();
    let s = Server::spawn(
        "discover",
        json!({"discover": [d], "limits": {"discovery_timeout_ms": 2000}, "workflows": [wf("manual", &["out", "x"])]}),
    )
    .await;
    let listed = s.ok("list_workflows", json!({})).await;
    let names: Vec<&str> = listed["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["manual", "good"],
        "only the valid executable joins, after the manifest"
    );
    assert_eq!(listed["workflows"][1]["source"], "discovered");
    assert_eq!(listed["workflows"][1]["title"], "Good one");
    let log = s.stderr();
    let skipped = |name: &str, why: &str| {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("{name} not reported:\n{log}"));
        assert!(line.contains(why), "{name}: expected {why:?} in {line}");
    };
    skipped("hanging", "did not answer --workflow-metadata within 2000 ms");
    skipped(
        "failing",
        "exited with exit status: 3 when asked --workflow-metadata: no metadata here",
    );
    skipped("garbage", "did not print workflow metadata JSON");
    skipped("dup", "its id \"manual\" is already the name of another workflow");
    skipped("outside", "outside the discover folder");
    assert!(!log.contains("notes.txt"), "a plain file is not a candidate");
    let st = s
        .ok("execute_workflow", json!({"workflow": "good", "wait_ms": 60000}))
        .await;
    assert_eq!(st["state"], "succeeded");
}

#[tokio::test]
async fn refresh_rescans_the_discovery_folders() {
    let tools = TestDir::new("refresh-dir");
    let s = Server::start("refresh", json!({"discover": [tools.path]})).await;
    assert_eq!(s.ok("list_workflows", json!({})).await["workflows"], json!([]));
    self_describing(
        &tools.path,
        "later",
        &json!({"id": "later", "name": "Later", "fields": []}),
    );
    assert_eq!(
        s.ok("list_workflows", json!({})).await["workflows"],
        json!([]),
        "no rescan without refresh"
    );
    let after = s.ok("list_workflows", json!({"refresh": true})).await;
    assert_eq!(after["workflows"][0]["name"], "later");
}

#[tokio::test]
async fn every_field_type_maps_to_a_param_and_reaches_the_executable_as_cli_arg_value() {
    let tools = TestDir::new("fields-dir");
    self_describing(
        &tools.path,
        "fields",
        &json!({"id": "fields", "name": "Fields", "fields": [
            {"name": "repeat", "cli_arg": "--repeat", "required": true, "default": "3", "field_type": {"type": "number", "min": 1, "max": 10}},
            {"name": "topic", "cli_arg": "--topic", "required": true, "field_type": {"type": "text"}},
            {"name": "input", "cli_arg": "--input", "field_type": {"type": "file_path", "pattern": "*.yaml"}},
            {"name": "mode", "cli_arg": "--mode", "default": "fast", "field_type": {"type": "select", "options": ["fast", "slow"]}},
            {"name": "phase", "cli_arg": "--phase", "field_type": {"type": "phase_selector", "total_phases": 4}},
            {"name": "state", "cli_arg": "--state", "field_type": {"type": "state_file", "pattern": "analysis_*.yaml", "phase": 1}}
        ]}),
    );
    let s = Server::start("fields", json!({"discover": [tools.path]})).await;
    let listed = s.ok("list_workflows", json!({})).await;
    let schema = &listed["workflows"][0]["params_schema"];
    assert_eq!(schema["required"], json!(["topic"]));
    assert_eq!(schema["properties"]["repeat"]["type"], "number");
    assert_eq!(schema["properties"]["repeat"]["maximum"], 10);
    assert_eq!(schema["properties"]["mode"]["enum"], json!(["fast", "slow"]));
    assert_eq!(schema["properties"]["phase"]["type"], "integer");
    assert_eq!(schema["properties"]["phase"]["maximum"], 3);
    assert_eq!(schema["properties"]["input"]["type"], "string");
    assert!(schema["properties"]["input"]["pattern"].is_string());

    let id = s
        .start_wf(
            "fields",
            json!({"repeat": 5.0, "topic": "two words", "input": "conf/in.yaml", "phase": 2, "state": "out/analysis_1.yaml"}),
        )
        .await;
    s.wait_final(&id).await;
    assert_eq!(
        texts(&s.all_lines(&id, 100).await),
        [
            "arg: --repeat",
            "arg: 5",
            "arg: --topic",
            "arg: two words",
            "arg: --input",
            "arg: conf/in.yaml",
            "arg: --mode",
            "arg: fast",
            "arg: --phase",
            "arg: 2",
            "arg: --state",
            "arg: out/analysis_1.yaml"
        ],
        "numbers are passed as the executable expects (5, not 5.0); defaults apply"
    );
    let err = s
        .err(
            "execute_workflow",
            json!({"workflow": "fields", "params": {"topic": "t", "phase": 4}}),
        )
        .await;
    assert_eq!(err, "param \"phase\" must be an integer between 0 and 3, got 4");
    let err = s
        .err(
            "execute_workflow",
            json!({"workflow": "fields", "params": {"topic": "t", "input": "a.json"}}),
        )
        .await;
    assert!(err.starts_with("param \"input\" must be a string matching"), "{err}");
    let err = s
        .err("execute_workflow", json!({"workflow": "fields", "params": {}}))
        .await;
    assert!(err.starts_with("missing required param \"topic\""), "{err}");
}

#[tokio::test]
async fn the_shipped_demo_runs_unchanged_and_its_progress_shows_in_the_status() {
    let config = serde_json::from_str(&std::fs::read_to_string(examples().join("workflows.json")).unwrap()).unwrap();
    let mut config: Value = config;
    config["discover"] = json!([examples().join("workflows.d")]);
    let s = Server::start("demo", config).await;
    let st = s
        .ok(
            "execute_workflow",
            json!({"workflow": "demo_multiphase", "params": {"repeat": 2}, "wait_ms": 60000}),
        )
        .await;
    let st = if st["state"] == "running" {
        s.wait_final(st["execution_id"].as_str().unwrap()).await
    } else {
        st
    };
    assert_eq!(st["state"], "succeeded");
    let p = &st["progress"];
    assert_eq!(
        p["phase"],
        json!({"index": 2, "total": 3, "name": "Report", "state": "completed"})
    );
    assert_eq!(p["phases_completed"], 3);
    assert_eq!(
        (
            p["tasks"]["started"].clone(),
            p["tasks"]["completed"].clone(),
            p["tasks"]["failed"].clone()
        ),
        (json!(6), json!(6), json!(0))
    );
    assert_eq!(p["tasks"]["running_count"], 0);
    assert_eq!(p["state_files_count"], 3);
    assert!(
        p.get("malformed_events").is_none(),
        "no malformed event, so the count is left out"
    );
    assert!(p["message"]["text"].is_string());
    let id = st["execution_id"].as_str().unwrap();
    let events = s
        .ok(
            "get_logs",
            json!({"execution_id": id, "events": "only", "max_lines": 1000}),
        )
        .await;
    assert_eq!(records(&events["lines"]).len() as u64, p["events"].as_u64().unwrap());
    assert!(records(&events["lines"]).iter().all(|l| l["event"] == true));
    let plain = s
        .ok(
            "get_logs",
            json!({"execution_id": id, "events": "exclude", "stream": "stdout"}),
        )
        .await;
    assert_eq!(records(&plain["lines"]).last().unwrap()["text"], "all phases done");

    let failing = s
        .ok(
            "execute_workflow",
            json!({"workflow": "demo_multiphase", "params": {"repeat": 1, "fail_phase": 1}, "wait_ms": 60000}),
        )
        .await;
    assert_eq!(failing["state"], "failed");
    assert_eq!(failing["progress"]["phase"]["state"], "failed");
    assert_eq!(failing["progress"]["phase"]["index"], 1);
    assert_eq!(failing["progress"]["phase"]["error"], "failed on request");
}

#[tokio::test]
async fn malformed_events_are_kept_as_plain_lines_and_counted() {
    let s = Server::start(
        "malformed-events",
        json!({"workflows": [wf("ev", &[
            "event", r#"{"type":"phase_started","phase":0,"name":"A","total_phases":2}"#,
            "event", "not json at all",
            "event", r#"{"type":"no_such_event"}"#,
        ])]}),
    )
    .await;
    let id = s.start_wf("ev", json!({})).await;
    let st = s.wait_final(&id).await;
    assert_eq!(st["progress"]["events"], 1);
    assert_eq!(st["progress"]["malformed_events"], 2);
    assert_eq!(st["progress"]["phase"]["name"], "A");
    let only = s.ok("get_logs", json!({"execution_id": id, "events": "only"})).await;
    assert_eq!(records(&only["lines"]).len(), 1);
    let plain = s.ok("get_logs", json!({"execution_id": id, "events": "exclude"})).await;
    assert_eq!(
        texts(&records(&plain["lines"])),
        [
            "__WF_EVENT__:not json at all",
            "__WF_EVENT__:{\"type\":\"no_such_event\"}"
        ],
        "malformed events stay in the log as plain lines"
    );
    let r = s.call("get_status", json!({"execution_id": id})).await;
    assert!(r.text.contains("2 malformed event line(s)"), "{}", r.text);
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(server_bin())
        .env("XDG_STATE_HOME", crate::util::test_state_home())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_reports_every_problem_and_exits_non_zero() {
    let tools = TestDir::new("check-dir");
    script(&tools.path, "garbage", "echo hello");
    let (_dir, path) = write_config(
        "check",
        &json!({"discover": [tools.path], "workflows": [
            {"name": "missing", "command": ["no-such-program-here"]},
            {"name": "nowhere", "command": ["true"], "cwd": "/no/such/folder"},
            wf("fine", &["out", "x"])
        ]}),
    );
    let (code, out, _) = cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("3 problem(s)"), "{out}");
    assert!(
        out.contains("workflow \"missing\": command \"no-such-program-here\" was not found in PATH"),
        "{out}"
    );
    assert!(out.contains("cwd /no/such/folder is not a folder"), "{out}");
    assert!(
        out.contains("garbage: it did not print workflow metadata JSON"),
        "{out}"
    );

    let (code, out, _) = cli(&["check", "--config", examples().join("workflows.json").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("3 workflow(s) (2 from the manifest, 1 discovered)"),
        "{out}"
    );
    assert!(out.contains("no problems found"), "{out}");

    let (_dir, bad) = write_config("check-bad", &json!({"workflows": [{"name": "x", "command": []}]}));
    let (code, out, _) = cli(&["check", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("workflows[0] \"x\": command is empty"), "{out}");
}

#[test]
fn check_refuses_a_param_mapped_to_ld_preload() {
    let (_dir, path) = write_config(
        "check-preload",
        &json!({"workflows": [{"name": "build", "command": ["make"], "params": [
            {"name": "target", "type": "string", "positional": true},
            {"name": "x", "type": "string", "env": "LD_PRELOAD"}
        ]}]}),
    );
    let (code, out, _) = cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("workflows[0] \"build\": params[1] \"x\": may not be mapped to environment variable LD_PRELOAD"),
        "{out}"
    );
}

#[test]
fn list_shows_each_workflow_with_its_params() {
    let cfg = examples().join("workflows.json");
    let (code, out, _) = cli(&["list", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("demo_multiphase (discovered: "), "{out}");
    assert!(
        out.contains("a number between 1 and 10, default 2  [--repeat VALUE]"),
        "{out}"
    );
    assert!(out.contains("count (manifest)"), "{out}");
    let (code, out, _) = cli(&["list", "--json", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["workflows"].as_array().unwrap().len(), 3);
}

#[test]
fn run_streams_output_and_exits_with_the_workflow_exit_code() {
    let (_dir, path) = write_config(
        "run",
        &json!({"workflows": [
            wf("three", &["out", "hello", "err", "oops", "exit", "3"]),
            wf("killed", &["out", "bye", "signal", "9"]),
            wf("events", &["event", r#"{"type":"phase_started","phase":0,"name":"Only","total_phases":1}"#, "out", "done"])
        ]}),
    );
    let cfg = path.to_str().unwrap();
    let (code, out, err) = cli(&["run", "three", "--config", cfg]);
    assert_eq!(code, 3, "the workflow's exit code: {err}");
    // Order between the two pipes is the order they were read in, so each line is checked on its own.
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["! oops", "hello"], "stdout as it is, stderr marked");
    assert!(err.contains("three failed (exit code 3)"), "{err}");
    let (code, out, _) = cli(&["run", "killed", "--config", cfg]);
    assert_eq!(code, 128 + 9);
    assert_eq!(out, "bye\n");
    let (code, out, _) = cli(&["run", "events", "--config", cfg]);
    assert_eq!(code, 0);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["done", "» phase 1/1 Only started"], "events are shown readably");
    let (code, _, err) = cli(&["run", "nope", "--config", cfg]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown workflow \"nope\""), "{err}");

    let demo = examples().join("workflows.json");
    let (code, out, err) = cli(&[
        "run",
        "demo_multiphase",
        "--config",
        demo.to_str().unwrap(),
        "--param",
        "repeat=1",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("» phase 1/3 Analyze started"), "{out}");
    assert!(out.contains("all phases done"), "{out}");
    let (code, _, err) = cli(&[
        "run",
        "demo_multiphase",
        "--config",
        demo.to_str().unwrap(),
        "-p",
        "repeat=11",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("param \"repeat\" must be a number between 1 and 10, got \"11\""),
        "{err}"
    );
}

/// The catalog's files from the bottom up, as listed in `src/catalog/mod.rs`: each may use only files before it.
const CATALOG_ORDER: &[&str] = &[
    "names",
    "unsafe_env",
    "glob",
    "param",
    "workflow",
    "info",
    "locate",
    "tasks",
    "trust",
    "config_file",
    "config",
    "metadata",
    "discovery",
    "registry",
];

#[test]
fn catalog_files_only_use_files_below_them() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/catalog");
    let reference = regex::Regex::new(r"(?:super|crate::catalog)::(\{[^}]*\}|\w+)").unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if file == "mod" {
            continue;
        }
        let rank = CATALOG_ORDER
            .iter()
            .position(|m| *m == file)
            .unwrap_or_else(|| panic!("src/catalog/{file}.rs is not in CATALOG_ORDER; add it there and to mod.rs"));
        let text = std::fs::read_to_string(&path).unwrap();
        for cap in reference.captures_iter(&text) {
            let used = cap[1].trim_matches(|c| c == '{' || c == '}');
            for name in used.split(',').map(|n| n.trim().split("::").next().unwrap().trim()) {
                if let Some(used_rank) = CATALOG_ORDER.iter().position(|m| *m == name) {
                    assert!(
                        used_rank < rank,
                        "src/catalog/{file}.rs uses `{name}`, which is not below it in CATALOG_ORDER: {CATALOG_ORDER:?}"
                    );
                }
            }
        }
        checked += 1;
    }
    assert_eq!(checked, CATALOG_ORDER.len(), "every file in CATALOG_ORDER exists");
}

/// Regression: the manifest refused param names the discovered-metadata path accepted (spaces, `=`, brackets, any
/// character) and the other way round (`.`), so the same name was legal or not depending on where it came from.
#[test]
fn manifest_params_and_discovered_fields_follow_the_same_name_rule() {
    use workflow_mcp::catalog::ConfigFile;
    use workflow_mcp::catalog::config::from_file;
    use workflow_mcp::catalog::metadata::WorkflowMetadata;

    let long = "a".repeat(65);
    let cases: &[(&str, bool)] = &[
        ("repeat", true),
        ("input_file", true),
        ("dry-run", true),
        ("v2", true),
        ("filter.id", true),
        ("_private", true),
        ("input file", false),
        ("key=value", false),
        ("filter[id]", false),
        ("naïve", false),
        ("", false),
        (&long, false),
    ];
    for (name, legal) in cases {
        let file: ConfigFile = serde_json::from_value(json!({"workflows": [{
            "name": "w", "command": ["true"], "params": [{"name": name, "type": "string", "arg": "--x"}]
        }]}))
        .unwrap();
        let manifest = from_file(file, PathBuf::from("/cfg/c.json"), PathBuf::from("/tmp"));
        let meta: WorkflowMetadata = serde_json::from_value(json!({"id": "w", "name": "W", "fields": [
            {"name": name, "cli_arg": "--x", "field_type": {"type": "text"}}
        ]}))
        .unwrap();
        let discovered = meta.into_workflow(Path::new("/wf/w"), Path::new("/"));
        assert_eq!(
            (manifest.is_ok(), discovered.is_ok()),
            (*legal, *legal),
            "param name {name:?}: manifest {:?}, discovered {:?}",
            manifest.err().map(|e| e.to_string()),
            discovered.err()
        );
        if !legal {
            let why = discovered.unwrap_err();
            assert!(why.contains(&format!("field {name:?}")), "{why}");
            assert!(why.contains("letters, digits, '_', '-', '.'"), "{why}");
        }
    }
}
