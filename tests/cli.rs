//! The command line: refusing a bad config at start.

use std::ffi::{OsStr, OsString};

use crate::util::{TestDir, server_bin, write_config};

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
