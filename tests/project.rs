//! A config found by itself, a project's own tasks as workflows, and trust: the binary started with no arguments
//! in a project folder, driven by a real MCP client over its stdio.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use rmcp::ServiceExt as _;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

use crate::util::{TestDir, server_bin};

/// Where `just` is: the npm package CI installs (WORKFLOW_MCP_NPM_BIN), else PATH. In CI a missing one fails.
fn just_dir() -> Option<PathBuf> {
    let npm_bin = std::env::var_os("WORKFLOW_MCP_NPM_BIN").map(PathBuf::from);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = npm_bin
        .into_iter()
        .chain(std::env::split_paths(&path))
        .find(|d| d.join("just").is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs just (.ci/run); it is missing"
        );
        eprintln!("skipped: just is not installed (CI installs it from npm: rust-just)");
    }
    found
}

/// The server a user runs in a project: the one `cargo install` put into a fresh CARGO_HOME
/// (`$WORKFLOW_MCP_INSTALLED`, set by .ci/run after scripts/package-check.sh), else the one this build made.
fn project_bin() -> String {
    std::env::var("WORKFLOW_MCP_INSTALLED")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| server_bin().to_string())
}

/// A user's world: HOME and the XDG folders in a temporary folder, PATH with `just`.
struct World {
    root: TestDir,
    path: String,
}

impl World {
    fn new(label: &str, just: Option<&Path>) -> World {
        let root = TestDir::new(label);
        let path = std::env::var("PATH").unwrap_or_default();
        let path = just.map_or(path.clone(), |j| format!("{}:{path}", j.display()));
        World { root, path }
    }

    fn command(&self, program: &str, cwd: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.current_dir(cwd)
            .env_clear()
            .env("PATH", &self.path)
            .env("HOME", self.root.join("home"))
            .env("XDG_STATE_HOME", self.root.join("state"))
            .env("XDG_CONFIG_HOME", self.root.join("config"))
            .env("WORKFLOW_MCP_LOG", "debug");
        cmd
    }

    /// `workflow-mcp ARGS` run in `cwd`; its exit code and stdout+stderr.
    async fn cli(&self, cwd: &Path, args: &[&str]) -> (i32, String) {
        let out = self.command(&project_bin(), cwd).args(args).output().await.unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    /// The server started with no arguments in `cwd`.
    async fn serve(&self, cwd: &Path) -> Client {
        self.serve_with(cwd, &[]).await
    }

    /// The server started with these arguments in `cwd`.
    async fn serve_with(&self, cwd: &Path, args: &[&str]) -> Client {
        let mut cmd = self.command(&project_bin(), cwd);
        cmd.args(args);
        let (transport, _) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::from(
                std::fs::File::create(self.root.join("server.stderr")).unwrap(),
            ))
            .spawn()
            .expect("spawn workflow-mcp");
        Client(().serve(transport).await.expect("MCP handshake"))
    }
}

struct Client(RunningService<RoleClient, ()>);

impl Client {
    /// A tool call: (is_error, text, structured).
    async fn call(&self, tool: &str, args: Value) -> (bool, String, Value) {
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args.as_object().unwrap().clone());
        let r = self.0.call_tool(params).await.expect("a tool answer");
        let text = r
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect();
        (
            r.is_error == Some(true),
            text,
            r.structured_content.unwrap_or(Value::Null),
        )
    }

    async fn run(&self, workflow: &str, params: Value) -> Value {
        let (err, text, status) = self
            .call(
                "execute_workflow",
                json!({"workflow": workflow, "params": params, "wait_ms": 50000}),
            )
            .await;
        assert!(!err, "{workflow} refused: {text}");
        assert!(status["state"] != "running", "{workflow} still running after 50 s");
        status
    }

    async fn refused(&self, workflow: &str) -> String {
        let (err, text, _) = self.call("execute_workflow", json!({"workflow": workflow})).await;
        assert!(err, "{workflow} ran, but should have been refused: {text}");
        text
    }

    async fn tail(&self, status: &Value) -> String {
        let id = status["execution_id"].as_str().unwrap();
        let (_, text, _) = self.call("get_logs", json!({"execution_id": id})).await;
        text
    }
}

/// A repository with package.json, Makefile and justfile, and a workflow-mcp.json importing them at its root;
/// returns the folder two levels down where the server starts.
fn fixture(root: &Path) -> (PathBuf, PathBuf) {
    let repo = root.join("repo");
    let start = repo.join("src/deep");
    std::fs::create_dir_all(&start).unwrap();
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::write(
        repo.join("workflow-mcp.json"),
        json!({"import": ["npm", "make", "just"]}).to_string(),
    )
    .unwrap();
    std::fs::write(
        repo.join("package.json"),
        json!({"name": "fixture", "version": "1.0.0", "scripts": {
            "pass": "node -e \"console.log('npm ran')\"",
            "fail": "node -e \"process.exit(3)\""
        }})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        repo.join("Makefile"),
        ".PHONY: greet\n# Say hello\ngreet:\n\t@echo make says hello\n\nfail: ## Fail on purpose\n\t@exit 4\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("justfile"),
        "# Greet someone\ngreet who=\"world\":\n    @echo hi {{who}}\n\n# Exit with a code\nfail code:\n    @exit {{code}}\n",
    )
    .unwrap();
    (repo.join("workflow-mcp.json"), start)
}

#[tokio::test]
async fn a_found_config_runs_nothing_until_trusted_and_a_changed_file_needs_trusting_again() {
    let Some(just) = just_dir() else { return };
    let world = World::new("project-trust", Some(&just));
    let (config, start) = fixture(&world.root.path);
    let config = config.canonicalize().unwrap();
    let trust_command = format!("workflow-mcp trust {}", config.display());

    let s = world.serve(&start).await;
    let (_, _, listed) = s.call("list_workflows", json!({})).await;
    let names: Vec<&str> = listed["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    for name in [
        "npm:pass",
        "npm:fail",
        "make:greet",
        "make:fail",
        "just:greet",
        "just:fail",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let greet = listed["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "just:greet")
        .unwrap();
    assert_eq!(greet["description"], "Greet someone");
    assert_eq!(greet["params_schema"]["properties"]["who"]["default"], "world");
    assert!(
        greet["blocked"].as_str().unwrap().contains(&trust_command),
        "listed with the command that allows it: {greet}"
    );
    assert!(listed["config"].as_str().unwrap().ends_with("repo/workflow-mcp.json"));
    let refusal = s.refused("make:greet").await;
    assert!(
        refusal.contains("not trusted yet") && refusal.contains(&trust_command),
        "{refusal}"
    );

    let (code, out) = world.cli(&start, &["trust"]).await;
    assert_eq!(code, 0, "{out}");
    let record_dir = world.root.join("state/workflow-mcp/trust");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&record_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for record in std::fs::read_dir(&record_dir).unwrap() {
        assert_eq!(record.unwrap().metadata().unwrap().permissions().mode() & 0o777, 0o600);
    }

    let ran = s.run("npm:pass", json!({})).await;
    assert_eq!(
        (ran["state"].as_str(), ran["exit_code"].as_i64()),
        (Some("succeeded"), Some(0)),
        "{ran}"
    );
    assert!(s.tail(&ran).await.contains("npm ran"));
    let ran = s.run("npm:fail", json!({})).await;
    assert_eq!(ran["exit_code"], 3, "{ran}");
    let ran = s.run("make:greet", json!({})).await;
    assert_eq!(ran["exit_code"], 0, "{ran}");
    assert!(s.tail(&ran).await.contains("make says hello"));
    let ran = s.run("make:fail", json!({})).await;
    assert_eq!(ran["exit_code"], 2, "make exits 2 when a recipe fails: {ran}");
    let ran = s.run("just:greet", json!({"who": "agent"})).await;
    assert_eq!(ran["exit_code"], 0, "{ran}");
    assert!(s.tail(&ran).await.contains("hi agent"));
    let ran = s.run("just:fail", json!({"code": "5"})).await;
    assert_eq!(ran["exit_code"], 5, "{ran}");
    let (err, text, _) = s.call("execute_workflow", json!({"workflow": "just:fail"})).await;
    assert!(err && text.contains("missing required param \"code\""), "{text}");

    // A task file the repository changes is refused again, until trusted again.
    let makefile = config.parent().unwrap().join("Makefile");
    let mut text = std::fs::read_to_string(&makefile).unwrap();
    text.push_str("\n.PHONY: evil\nevil:\n\t@echo evil\n");
    std::fs::write(&makefile, text).unwrap();
    let refusal = s.refused("make:greet").await;
    assert!(
        refusal.contains("changed since it was trusted") && refusal.contains(&trust_command),
        "{refusal}"
    );
    let (_, _, listed) = s.call("list_workflows", json!({"refresh": true})).await;
    let evil = listed["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "make:evil");
    assert!(
        evil.is_some_and(|e| e["blocked"].is_string()),
        "a new target is picked up by refresh, blocked: {listed}"
    );
    let (code, out) = world.cli(&start, &["trust"]).await;
    assert_eq!(code, 0, "{out}");
    let ran = s.run("make:evil", json!({})).await;
    assert_eq!(ran["exit_code"], 0, "{ran}");
}

#[tokio::test]
async fn without_any_config_the_server_lists_nothing_and_says_how_to_make_one() {
    let world = World::new("project-none", None);
    let bare = world.root.join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    let s = world.serve(&bare).await;
    let (err, text, listed) = s.call("list_workflows", json!({})).await;
    assert!(!err, "{text}");
    assert_eq!(listed["workflows"], json!([]));
    assert!(
        listed["hint"].as_str().unwrap().contains("workflow-mcp init"),
        "{listed}"
    );
    assert!(text.contains("workflow-mcp init"), "the text says it too: {text}");
}

#[tokio::test]
async fn init_writes_a_starter_config_from_the_task_files_and_never_overwrites_one() {
    let world = World::new("project-init", None);
    let (config, _) = fixture(&world.root.path);
    std::fs::remove_file(&config).unwrap();
    let repo = config.parent().unwrap();
    let (code, out) = world.cli(repo, &["init"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("npm:pass") && out.contains("make:greet") && out.contains("just:greet"),
        "{out}"
    );
    assert!(out.contains("workflow-mcp trust"), "{out}");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(written["import"], json!(["npm", "make", "just"]));
    let (code, out) = world.cli(repo, &["init"]).await;
    assert_eq!(code, 1);
    assert!(out.contains(&format!("{} already exists", config.display())), "{out}");
}

/// Claude Desktop starts servers in `/`: `--project DIR` names the project; without a project config the
/// user's own config is used, trusted as it is (only the user writes there).
#[tokio::test]
async fn project_names_the_folder_and_the_users_own_config_is_the_fallback() {
    let world = World::new("project-flag", None);
    let (config, start) = fixture(&world.root.path);
    let s = world
        .serve_with(Path::new("/"), &["--project", start.to_str().unwrap()])
        .await;
    let (_, _, listed) = s.call("list_workflows", json!({})).await;
    assert_eq!(
        listed["config"].as_str().map(PathBuf::from),
        Some(config.clone()),
        "{listed}"
    );
    let (code, out) = world.cli(&start, &["check"]).await;
    assert!(
        out.contains("found in the project, NOT trusted: workflow-mcp trust"),
        "{code} {out}"
    );

    // Claude Code says where the project is in $CLAUDE_PROJECT_DIR; the working directory then does not matter.
    let mut cmd = world.command(&project_bin(), Path::new("/"));
    cmd.env("CLAUDE_PROJECT_DIR", &start).arg("list").arg("--json");
    let out = cmd.output().await.unwrap();
    let listed: Value = serde_json::from_slice(&out.stdout).expect("list --json prints JSON");
    assert!(
        listed["workflows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == "make:greet"),
        "{listed}"
    );

    let user = world.root.join("config/workflow-mcp/config.json");
    std::fs::create_dir_all(user.parent().unwrap()).unwrap();
    let cmd = vec![
        crate::util::fake().to_owned(),
        "out".to_owned(),
        "from the user's config".to_owned(),
    ];
    std::fs::write(
        &user,
        json!({"workflows": [{"name": "mine", "command": cmd}]}).to_string(),
    )
    .unwrap();
    let elsewhere = world.root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let s = world.serve(&elsewhere).await;
    let ran = s.run("mine", json!({})).await;
    assert_eq!(ran["exit_code"], 0, "the user's own config needs no trust: {ran}");
    assert!(s.tail(&ran).await.contains("from the user's config"));
}

/// Listing an untrusted project's tasks runs nothing of them: `just --dump` parses, a backtick is not evaluated.
#[tokio::test]
async fn listing_an_untrusted_justfile_runs_none_of_it() {
    let Some(just) = just_dir() else { return };
    let world = World::new("project-dump", Some(&just));
    let (_, start) = fixture(&world.root.path);
    let marker = world.root.join("ran");
    let justfile = start.parent().unwrap().parent().unwrap().join("justfile");
    std::fs::write(
        &justfile,
        format!(
            "x := `touch {}`\n\n# Uses x\nr:\n    echo {{{{x}}}}\n",
            marker.display()
        ),
    )
    .unwrap();
    let s = world.serve(&start).await;
    let (_, _, listed) = s.call("list_workflows", json!({"refresh": true})).await;
    let r = listed["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "just:r");
    assert!(r.is_some_and(|r| r["description"] == "Uses x"), "{listed}");
    assert!(!marker.exists(), "importing the justfile ran its backtick");
}

/// `check` checks imported tasks as it checks manifest entries: a tool that is not installed is a problem.
#[tokio::test]
async fn check_names_an_imported_task_whose_tool_is_missing() {
    if Path::new("/usr/bin/just").exists() || Path::new("/bin/just").exists() {
        eprintln!("skipped: just is installed system-wide, so it cannot be missing");
        return;
    }
    let mut world = World::new("project-check", None);
    world.path = "/usr/bin:/bin".into();
    let (_, start) = fixture(&world.root.path);
    let (code, out) = world.cli(&start, &["check"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("workflow \"just:greet\": "), "{out}");
    assert!(!out.contains("workflow \"make:greet\": "), "make is installed: {out}");
}
