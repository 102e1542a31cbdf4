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

/// Runs the binary with `args` and its stdout on a new pseudo-terminal; returns what the terminal received, with
/// the terminal's "\r\n" for each newline turned back into "\n".
fn on_a_terminal(args: &[&OsStr]) -> Vec<u8> {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the given ints; the rest may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here alone.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = std::process::Command::new(server_bin())
        .env("XDG_STATE_HOME", crate::util::test_state_home())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(slave))
        .spawn()
        .unwrap();
    // The slave end is now only the child's: reading the master ends (EIO) once the child has exited.
    let mut master = std::fs::File::from(master);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert!(child.wait().unwrap().success());
    let mut out = Vec::with_capacity(got.len());
    let mut i = 0;
    while i < got.len() {
        if got[i..].starts_with(b"\r\n") {
            i += 1;
            continue;
        }
        out.push(got[i]);
        i += 1;
    }
    out
}

#[tokio::test]
async fn logs_on_a_terminal_shows_control_characters_escaped_and_elsewhere_byte_exact() {
    let dir = TestDir::new("cli-controls");
    let state_dir = dir.join("state");
    // BEL, CSI as one C1 character (U+009B), OSC as one (U+009D), a tab, an ANSI colour, ^A, DEL.
    let line = "61 07 62 c29b 3331 6d 63 c29d 30 3b 07 64 09 65 1b5b33316d 72 1b5b306d 01 7f 0a".replace(' ', "");
    let s = crate::util::Server::builder(
        "cli-controls",
        serde_json::json!({"workflows": [wf("ctl", &["raw-out", &line, "exit", "1"])]}),
    )
    .state_dir(&state_dir)
    .spawn()
    .await;
    let id = s.start_wf("ctl", serde_json::json!({})).await;
    s.wait_final(&id).await;
    let args = [
        OsStr::new("logs"),
        OsStr::new(&id),
        OsStr::new("--state-dir"),
        state_dir.as_os_str(),
    ];

    let seen = on_a_terminal(&args);
    assert_eq!(
        String::from_utf8_lossy(&seen),
        "a^Gb\\u{9b}31mc\\u{9d}0;^Gd\ter^A^?\n",
        "no control character but tab reaches the terminal"
    );

    let status = on_a_terminal(&[
        OsStr::new("status"),
        OsStr::new(&id),
        OsStr::new("--state-dir"),
        state_dir.as_os_str(),
    ]);
    let status = String::from_utf8_lossy(&status);
    assert!(
        !status.contains(|c: char| c.is_control() && c != '\n' && c != '\t'),
        "status quotes the workflow's lines escaped too: {status:?}"
    );
    let piped = std::process::Command::new(server_bin())
        .env("XDG_STATE_HOME", crate::util::test_state_home())
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        piped.stdout,
        "a\x07b\u{9b}31mc\u{9d}0;\x07d\ter\x01\x7f\n".as_bytes(),
        "into a pipe or file the text is as stored (ANSI colours removed)"
    );
}

#[test]
fn a_history_row_with_an_unknown_state_is_reported_unreadable_not_lost() {
    let (dir, config) = greet_config("bad-state");
    let state_dir = dir.join("state");
    let state = state_dir.to_str().unwrap();
    let out = cli(["run", "greet", "--config", &config, "--state-dir", state]);
    assert_eq!(out.code, Some(0), "{out:?}");
    // Another program (or a damaged disk) left a word that is no state.
    let db = rusqlite::Connection::open(state_dir.join("history.db")).unwrap();
    db.execute("UPDATE executions SET state = 'bogus'", []).unwrap();
    let id: String = db.query_row("SELECT id FROM executions", [], |r| r.get(0)).unwrap();
    let out = cli(["status", &id, "--state-dir", state]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "the history's record of execution {id} is unreadable (column state)"
        )) && out.stderr.contains("\"bogus\" is not an execution state"),
        "{out:?}"
    );
    let out = cli(["history", "--state-dir", state]);
    assert!(!out.stdout.contains("lost"), "never shown as some other state: {out:?}");
}
