//! The command line: refusing a bad config at start.

use crate::util::{server_bin, write_config};

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
