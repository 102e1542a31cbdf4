//! The command line: parsing, usage errors, and refusing a bad config at start.

use std::ffi::{OsStr, OsString};

use crate::util::{TestDir, server_bin, wf, write_config};

#[test]
fn a_bad_config_is_refused_at_start_naming_the_file_the_entry_and_the_problem() {
    let (_dir, path) = write_config(
        "badcfg",
        &serde_json::json!({"workflows": [
            {"name": "ok", "command": ["true"]},
            {"name": "broken", "command": ["x"], "params": [{"name": "n", "type": "integer", "flag": "--n"}]}
        ]}),
    );
    let out = std::process::Command::new(server_bin())
        .env("XDG_STATE_HOME", crate::util::test_state_home())
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing on stdout, the protocol channel");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert!(
        err.contains("workflows[1] \"broken\": params[0] \"n\": \"flag\" is only for boolean params"),
        "{err}"
    );

    let out = std::process::Command::new(server_bin())
        .env("XDG_STATE_HOME", crate::util::test_state_home())
        .args(["--config", "/no/such/file.json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read config file /no/such/file.json"), "{err}");
}

/// What a run of the binary printed, shown whole when an assertion fails.
#[derive(Debug)]
#[expect(dead_code, reason = "args is read only through Debug, when an assertion fails")]
struct Output {
    args: Vec<String>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with these arguments, without $WORKFLOW_MCP_CONFIG, and returns what it printed.
fn cli<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = std::process::Command::new(server_bin())
        .env("XDG_STATE_HOME", crate::util::test_state_home())
        .args(&args)
        .env_remove("WORKFLOW_MCP_CONFIG")
        .output()
        .unwrap();
    Output {
        args: args.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A config with one workflow, `greet`, that prints "hello".
fn greet_config(label: &str) -> (TestDir, String) {
    let (dir, path) = write_config(
        label,
        &serde_json::json!({"workflows": [wf("greet", &["out", "hello"])]}),
    );
    (dir, path.to_str().unwrap().to_owned())
}

#[test]
fn a_boolean_flag_given_a_value_is_a_usage_error() {
    let (_dir, config) = greet_config("json-value");
    let out = cli(["list", "--config", &config, "--json=false"]);
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(out.stdout.is_empty(), "{out:#?}");
    assert!(out.stderr.contains("--json takes no value"), "{out:#?}");
}

#[test]
fn double_dash_ends_options_and_what_follows_is_positional() {
    let (_dir, config) = greet_config("double-dash");
    let out = cli(["list", "--config", &config, "--"]);
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert!(out.stdout.contains("greet"), "{out:#?}");

    let out = cli(["run", "--config", &config, "--", "greet"]);
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert!(out.stdout.contains("hello"), "{out:#?}");

    // After `--` an argument that looks like an option is the workflow's name.
    let out = cli(["run", "--config", &config, "--", "--greet"]);
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(out.stderr.contains("unknown workflow \"--greet\""), "{out:#?}");
}

#[test]
fn help_command_prints_that_commands_help() {
    let general = cli(["--help"]);
    assert_eq!(general.code, Some(0), "{general:#?}");
    assert_eq!(cli(["help"]).stdout, general.stdout);
    for command in ["serve", "list", "check", "run"] {
        let help = cli(["help", command]);
        assert_eq!(help.code, Some(0), "{help:#?}");
        assert_eq!(help.stdout, cli([command, "--help"]).stdout, "{help:#?}");
        assert_ne!(help.stdout, general.stdout, "{help:#?}");
        assert!(help.stdout.starts_with(&format!("workflow-mcp {command}")), "{help:#?}");
    }
    let out = cli(["help", "bogus"]);
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(out.stderr.contains("unknown command \"bogus\""), "{out:#?}");
}

#[test]
fn a_config_path_that_is_not_utf8_works() {
    use std::os::unix::ffi::OsStringExt as _;
    let (dir, utf8_path) = greet_config("non-utf8");
    let path = dir.path.join(OsString::from_vec(b"cfg-\xff.json".to_vec()));
    std::fs::rename(&utf8_path, &path).unwrap();
    let out = cli([OsStr::new("list"), OsStr::new("--config"), path.as_os_str()]);
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert!(out.stdout.contains("greet"), "{out:#?}");
}

#[test]
fn a_missing_config_file_names_the_path_and_the_os_error_once() {
    let dir = TestDir::new("missing-config");
    let path = dir.join("absent.json");
    let path = path.to_str().unwrap();
    let os_error = std::io::Error::from_raw_os_error(libc::ENOENT).to_string();

    let out = cli(["list", "--config", path]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr.contains(&format!("cannot read config file {path}: ")),
        "{out:#?}"
    );
    assert_eq!(out.stderr.matches(&os_error).count(), 1, "{out:#?}");

    // `check` reports problems on stdout, the same message.
    let out = cli(["check", "--config", path]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stdout.contains(&format!("cannot read config file {path}: ")),
        "{out:#?}"
    );
    assert_eq!(out.stdout.matches(&os_error).count(), 1, "{out:#?}");
}
