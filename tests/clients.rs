//! Real agent CLIs (Claude Code, Gemini CLI, Codex, from npm) take the README's `mcp add` line as a new user
//! would. Claude Code and Gemini CLI then check the built server with `mcp list` (no model access needed) and
//! must print nothing but its `Connected` line: a schema a client does not understand shows up there as a
//! warning (Claude Code printed 214 for schemars' integer formats). Codex's `mcp list` starts no server, so its
//! test checks the command the line records. The CLIs come from `$WORKFLOW_MCP_NPM_BIN`, else
//! `target/npm/node_modules/.bin` (where `.ci/run` installs them). Without them a test says it was skipped and
//! why — unless CI is set, then it fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::util::{TestDir, server_bin, wf};

/// The folder holding these npm-installed programs, or `None` (after saying why) when a test may skip.
pub fn npm_bin(test: &str, programs: &[&str]) -> Option<PathBuf> {
    let dir = std::env::var_os("WORKFLOW_MCP_NPM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/npm/node_modules/.bin"));
    let missing: Vec<&&str> = programs.iter().filter(|p| !dir.join(p).exists()).collect();
    if missing.is_empty() {
        return Some(dir);
    }
    let why = format!(
        "{test}: no {missing:?} in {}; install them with `npm install --prefix target/npm \
         @anthropic-ai/claude-code @google/gemini-cli @openai/codex @anthropic-ai/mcpb` (as .ci/run does) or set \
         WORKFLOW_MCP_NPM_BIN",
        dir.display()
    );
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    assert!(!in_ci, "{why}");
    eprintln!("skipped: {why}");
    None
}

/// A fresh home (no user config of the person running the tests, nothing written to theirs) with a project
/// folder in it, and a config the server serves.
struct ClientHome {
    dir: TestDir,
}

impl ClientHome {
    fn new(label: &str) -> ClientHome {
        let dir = TestDir::new(label);
        std::fs::create_dir_all(dir.join("project")).unwrap();
        // The project's own config, which the server finds from the folder the client starts it in.
        let config = json!({"workflows": [wf("hello", &["out:hello"])]});
        std::fs::write(dir.join("project/workflow-mcp.json"), config.to_string()).unwrap();
        ClientHome { dir }
    }

    fn project(&self) -> PathBuf {
        self.dir.join("project")
    }

    /// The README's one-liner for a client, as words, with the built server in place of `workflow-mcp`.
    fn readme_line(&self, client: &str) -> Vec<String> {
        crate::docs::readme_line(&format!("{client} mcp add "))
            .split_whitespace()
            .skip(1)
            .map(|w| if w == "workflow-mcp" { server_bin() } else { w }.to_owned())
            .collect()
    }

    /// Runs a CLI in the project folder with this home; its stdout and stderr together, after checking it
    /// exited 0.
    async fn run(&self, program: &Path, args: &[String]) -> String {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(self.project())
            .env_clear()
            .env("HOME", &self.dir.path)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TERM", "dumb")
            .env("NO_COLOR", "1")
            // No update checks or telemetry: the check needs no network.
            .env("DISABLE_AUTOUPDATER", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("GEMINI_CLI_NO_RELAUNCH", "1")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        // A hang guard, not a timing assertion: a CLI that never answers fails the test instead of stalling it.
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{} {args:?} did not finish within 120 s", program.display()))
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{} {args:?} failed ({}):\n{text}",
            program.display(),
            out.status
        );
        text
    }
}

/// The lines of a `mcp list` answer that are neither blank, nor one of the CLI's own headings, nor the status
/// line of `server` saying `expected` — each is a warning or an error a user would see.
fn stray_lines<'a>(listing: &'a str, headings: &[&str], server: &str, expected: &str) -> Vec<&'a str> {
    listing
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !headings.contains(l))
        .filter(|l| !(l.contains(&format!("{server}: ")) && l.ends_with(expected)))
        .collect()
}

#[tokio::test]
async fn claude_code_connects_to_the_server_without_a_warning() {
    let Some(bin) = npm_bin("claude_code_connects_to_the_server_without_a_warning", &["claude"]) else {
        return;
    };
    let home = ClientHome::new("claude");
    let claude = bin.join("claude");
    home.run(&claude, &home.readme_line("claude")).await;
    let listing = home.run(&claude, &["mcp".to_owned(), "list".to_owned()]).await;
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("workflows: ") && l.ends_with("✔ Connected")),
        "claude mcp list does not say the server is connected:\n{listing}"
    );
    let stray = stray_lines(&listing, &["Checking MCP server health…"], "workflows", "✔ Connected");
    assert!(
        stray.is_empty(),
        "claude mcp list printed warnings:\n{}",
        stray.join("\n")
    );
}

#[tokio::test]
async fn gemini_cli_connects_to_the_server_without_a_warning() {
    let Some(bin) = npm_bin("gemini_cli_connects_to_the_server_without_a_warning", &["gemini"]) else {
        return;
    };
    let home = ClientHome::new("gemini");
    // Gemini CLI loads a project's servers only from a folder the user trusts.
    let gemini_dir = home.dir.join(".gemini");
    std::fs::create_dir_all(&gemini_dir).unwrap();
    let trusted = json!({ home.project().to_str().unwrap(): "TRUST_FOLDER" });
    std::fs::write(gemini_dir.join("trustedFolders.json"), trusted.to_string()).unwrap();
    let gemini = bin.join("gemini");
    home.run(&gemini, &home.readme_line("gemini")).await;
    let listing = home.run(&gemini, &["mcp".to_owned(), "list".to_owned()]).await;
    assert!(
        listing
            .lines()
            .any(|l| l.contains("workflows: ") && l.ends_with("- Connected")),
        "gemini mcp list does not say the server is connected:\n{listing}"
    );
    let stray = stray_lines(&listing, &["Configured MCP servers:"], "workflows", "- Connected");
    assert!(
        stray.is_empty(),
        "gemini mcp list printed warnings:\n{}",
        stray.join("\n")
    );
}

#[tokio::test]
async fn codex_takes_the_readme_line_as_the_server_command() {
    let Some(bin) = npm_bin("codex_takes_the_readme_line_as_the_server_command", &["codex"]) else {
        return;
    };
    // `codex mcp list` does not start servers, so this checks what the README's line makes Codex run.
    let home = ClientHome::new("codex");
    let codex = bin.join("codex");
    home.run(&codex, &home.readme_line("codex")).await;
    let args: Vec<String> = ["mcp", "get", "workflows", "--json"].map(str::to_owned).into();
    let answer = home.run(&codex, &args).await;
    let json_start = answer
        .find('{')
        .unwrap_or_else(|| panic!("codex mcp get gave no JSON:\n{answer}"));
    let entry: serde_json::Value = serde_json::Deserializer::from_str(&answer[json_start..])
        .into_iter()
        .next()
        .unwrap()
        .unwrap_or_else(|e| panic!("codex mcp get: {e}:\n{answer}"));
    let mut want = home.readme_line("codex");
    let program = want
        .iter()
        .position(|w| w == server_bin())
        .expect("the line starts the server");
    let want_args = want.split_off(program + 1);
    assert_eq!(entry["transport"]["command"], json!(server_bin()), "{entry}");
    assert_eq!(entry["transport"]["args"], json!(want_args), "{entry}");
}
