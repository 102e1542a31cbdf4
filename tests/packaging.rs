//! How the server reaches people: the MCP Registry listing (`server.json`), the MCPB bundle Claude Desktop installs
//! in one click (`packaging/mcpb/manifest.json`, packed by `scripts/mcpb-pack.sh` with the mcpb CLI from npm), and
//! the release archives `dist` builds (`dist-workspace.toml`, `.github/workflows/release.yml`) that
//! `cargo binstall` finds. Each names the same server, version and repository as Cargo.toml.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

use crate::clients::npm_bin;
use crate::util::{TestDir, server_bin, wf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// The value of `key = "value"` in Cargo.toml's `[package]`.
fn cargo_field(key: &str) -> String {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[package]")
        .take_while(|l| !l.starts_with('[') || l.trim() == "[package]")
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| panic!("Cargo.toml [package] has no {key}"))
}

/// A version the registry takes: a specific one, not a range or `latest`.
fn is_exact_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 255
        && v != "latest"
        && !v.starts_with(['^', '~', '>', '<', '='])
        && !v.split('.').any(|part| matches!(part, "x" | "X" | "*"))
}

/// The MCP Registry's checks of a `server.json`, as its schema states them (2025-12-11, the `draft` schema of
/// github.com/modelcontextprotocol/registry, docs/reference/server-json/draft/server.schema.json at 13760d0):
/// written out here rather than copied, and checked without a JSON Schema crate. Returns what is wrong.
fn registry_problems(server: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: &str| {
        if !ok {
            problems.push(what.to_owned());
        }
    };
    let str_of = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let name = str_of(server, "name").unwrap_or_default();
    let name_re = regex::Regex::new(r"^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$").unwrap();
    check(
        (3..=200).contains(&name.len()) && name_re.is_match(&name),
        "name: namespace/name, 3 to 200 characters",
    );
    let description = str_of(server, "description").unwrap_or_default();
    check(
        (1..=100).contains(&description.chars().count()),
        "description: 1 to 100 characters",
    );
    check(
        str_of(server, "version").is_some_and(|v| is_exact_version(&v)),
        "version: a specific version",
    );
    if let Some(title) = server.get("title") {
        check(
            title.as_str().is_some_and(|t| (1..=100).contains(&t.chars().count())),
            "title: 1 to 100 characters",
        );
    }
    if let Some(schema) = server.get("$schema") {
        check(
            schema
                .as_str()
                .is_some_and(|s| s.starts_with("https://static.modelcontextprotocol.io/schemas/")),
            "$schema: the registry's schema URL",
        );
    }
    if let Some(repo) = server.get("repository") {
        check(
            str_of(repo, "url").is_some_and(|u| u.starts_with("https://")) && str_of(repo, "source").is_some(),
            "repository: url and source",
        );
    }
    let sha_re = regex::Regex::new(r"^[a-f0-9]{64}$").unwrap();
    let packages = server
        .get("packages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, p) in packages.iter().enumerate() {
        let kind = str_of(p, "registryType").unwrap_or_default();
        check(!kind.is_empty(), &format!("packages[{i}]: registryType"));
        check(
            str_of(p, "identifier").is_some_and(|s| !s.is_empty()),
            &format!("packages[{i}]: identifier"),
        );
        let transport = p.get("transport").and_then(|t| str_of(t, "type")).unwrap_or_default();
        check(
            ["stdio", "streamable-http", "sse"].contains(&transport.as_str()),
            &format!("packages[{i}]: transport.type stdio, streamable-http or sse"),
        );
        if let Some(v) = p.get("version") {
            check(
                v.as_str().is_some_and(is_exact_version),
                &format!("packages[{i}]: a specific version"),
            );
        }
        if let Some(url) = p.get("registryBaseUrl") {
            check(
                url.as_str().is_some_and(|u| u.starts_with("https://")),
                &format!("packages[{i}]: registryBaseUrl a URL"),
            );
        }
        // The registry requires the hash of a downloaded bundle; any package may carry one.
        let sha = str_of(p, "fileSha256");
        check(
            sha.as_deref().is_none_or(|s| sha_re.is_match(s)) && (kind != "mcpb" || sha.is_some()),
            &format!("packages[{i}]: fileSha256 (64 lowercase hex digits; required for mcpb)"),
        );
        let arguments = p
            .get("packageArguments")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (j, a) in arguments.iter().enumerate() {
            let at = format!("packages[{i}].packageArguments[{j}]");
            match str_of(a, "type").as_deref() {
                Some("named") => check(
                    str_of(a, "name").is_some(),
                    &format!("{at}: a named argument has a name"),
                ),
                Some("positional") => check(
                    a.get("valueHint").is_some() || a.get("value").is_some(),
                    &format!("{at}: a positional argument has a valueHint or a value"),
                ),
                _ => check(false, &format!("{at}: type named or positional")),
            }
            if let Some(f) = a.get("format") {
                check(
                    ["string", "number", "boolean", "filepath"].contains(&f.as_str().unwrap_or_default()),
                    &format!("{at}: format string, number, boolean or filepath"),
                );
            }
        }
    }
    problems
}

#[test]
fn the_registry_listing_is_what_the_mcp_registry_accepts() {
    let server = read_json("server.json");
    let problems = registry_problems(&server);
    assert!(problems.is_empty(), "server.json: {problems:#?}");
    // The check itself rejects what the registry rejects.
    let mut bad = server.clone();
    bad["description"] = json!("x".repeat(101));
    bad["version"] = json!("latest");
    bad["packages"][1].as_object_mut().unwrap().remove("fileSha256");
    assert_eq!(registry_problems(&bad).len(), 3, "{:#?}", registry_problems(&bad));
}

#[test]
fn the_listings_name_the_crate_its_version_and_repository() {
    let version = cargo_field("version");
    let repository = cargo_field("repository");
    let owner = repository
        .trim_start_matches("https://github.com/")
        .split('/')
        .next()
        .unwrap();
    let server = read_json("server.json");
    assert_eq!(server["name"], json!(format!("io.github.{owner}/workflow-mcp")));
    assert_eq!(server["version"], json!(version));
    assert_eq!(server["repository"]["url"], json!(repository));
    let kinds: Vec<&str> = server["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["registryType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["cargo", "mcpb"], "server.json lists the crate and the bundle");
    for p in server["packages"].as_array().unwrap() {
        assert_eq!(p["version"], json!(version), "{p}");
    }
    assert_eq!(server["packages"][0]["identifier"], json!(cargo_field("name")));
    let bundle = server["packages"][1]["identifier"].as_str().unwrap();
    assert!(
        bundle.starts_with(&format!("{repository}/releases/download/v{version}/")),
        "the bundle is a release asset of this version: {bundle}"
    );
    let manifest = read_json("packaging/mcpb/manifest.json");
    assert_eq!(manifest["version"], json!(version));
    assert_eq!(manifest["name"], json!(cargo_field("name")));
    assert_eq!(manifest["repository"]["url"], json!(repository));
    assert_eq!(manifest["server"]["type"], json!("binary"));
}

/// The bundle to check: `$WORKFLOW_MCP_MCPB` (CI packs the installed release binary), else one packed here from
/// the test build of the server.
fn bundle(dir: &TestDir, npm: &Path) -> PathBuf {
    if let Some(given) = std::env::var_os("WORKFLOW_MCP_MCPB") {
        return PathBuf::from(given);
    }
    let out = dir.join("workflow-mcp.mcpb");
    let status = std::process::Command::new("bash")
        .arg(root().join("scripts/mcpb-pack.sh"))
        .arg(server_bin())
        .arg(&out)
        .env("WORKFLOW_MCP_NPM_BIN", npm)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "scripts/mcpb-pack.sh failed: {status}");
    out
}

/// Replaces the manifest's `${__dirname}` and `${user_config.KEY}` the way Claude Desktop does.
fn substitute(template: &str, dirname: &Path, user_config: &Value) -> String {
    let mut s = template.replace("${__dirname}", dirname.to_str().unwrap());
    for (key, value) in user_config.as_object().unwrap() {
        s = s.replace(&format!("${{user_config.{key}}}"), value.as_str().unwrap());
    }
    assert!(!s.contains("${"), "unsubstituted variable in {template:?}");
    s
}

#[tokio::test]
async fn the_mcpb_bundle_starts_as_its_manifest_says_and_lists_the_tools() {
    let test = "the_mcpb_bundle_starts_as_its_manifest_says_and_lists_the_tools";
    let Some(npm) = npm_bin(test, &["mcpb"]) else {
        return;
    };
    let dir = TestDir::new("mcpb");
    let bundle = bundle(&dir, &npm);
    let unpacked = dir.join("unpacked");
    let out = std::process::Command::new(npm.join("mcpb"))
        .arg("unpack")
        .arg(&bundle)
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mcpb unpack: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(unpacked.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["server"]["type"], json!("binary"));
    let entry = unpacked.join(manifest["server"]["entry_point"].as_str().unwrap());
    assert!(entry.is_file(), "the bundle holds its entry point {}", entry.display());
    // What a user fills in when installing: the project folder, which holds the config.
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    let config_file = project.join("workflow-mcp.json");
    std::fs::write(
        &config_file,
        json!({"workflows": [wf("hello", &["out:hello"])]}).to_string(),
    )
    .unwrap();
    let user_config = json!({"project": project.to_str().unwrap()});
    for (key, spec) in manifest["user_config"].as_object().unwrap() {
        if spec["required"] == json!(true) {
            assert!(
                user_config.get(key).is_some(),
                "the test fills in required user_config {key:?}"
            );
        }
    }
    let mcp = &manifest["server"]["mcp_config"];
    let command = substitute(mcp["command"].as_str().unwrap(), &unpacked, &user_config);
    let args: Vec<String> = mcp["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| substitute(a.as_str().unwrap(), &unpacked, &user_config))
        .collect();

    let mut cmd = tokio::process::Command::new(&command);
    // Claude Desktop starts a server in `/`; the history goes to the test's folder, not the user's.
    cmd.args(&args)
        .current_dir("/")
        .env("XDG_STATE_HOME", dir.join("state"));
    let client = tokio::time::timeout(Duration::from_secs(60), ().serve(TokioChildProcess::new(cmd).unwrap()))
        .await
        .expect("the bundled server answers initialize (hang guard)")
        .unwrap_or_else(|e| panic!("{command} {args:?} did not start as an MCP server: {e}"));
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    let mut declared: Vec<String> = manifest["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    declared.sort();
    assert_eq!(names, declared, "the manifest lists the tools the bundled server has");
    // Started in `/`, the server serves the config of the project the user picked.
    let listing = client
        .call_tool(rmcp::model::CallToolRequestParams::new("list_workflows"))
        .await
        .unwrap();
    let structured = listing
        .structured_content
        .expect("list_workflows answers structured content");
    assert_eq!(
        structured["config"],
        json!(config_file.to_str().unwrap()),
        "the bundled server uses the project's config: {structured}"
    );
    client.cancel().await.unwrap();
}

/// The lines of a TOML file's `[table]`, comments and blank lines left out.
fn toml_table(file: &str, table: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let header = format!("[{table}]");
    text.lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .map(|l| l.split(" #").next().unwrap().trim().to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// A `key = "value"` of a table.
fn toml_str(lines: &[String], key: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// The release targets: Linux x86_64 and aarch64, macOS on both.
const RELEASE_TARGETS: [&str; 4] = [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
];

/// The archives `dist` makes for a single-package workspace: `NAME-TARGET.tar.xz` in the release of tag
/// `vVERSION`, holding the folder `NAME-TARGET` with the binary.
fn dist_archive_url(repository: &str, version: &str, target: &str) -> String {
    format!("{repository}/releases/download/v{version}/workflow-mcp-{target}.tar.xz")
}

#[test]
fn the_release_archives_are_the_ones_cargo_binstall_looks_for() {
    let dist = toml_table("dist-workspace.toml", "dist");
    let text = std::fs::read_to_string(root().join("dist-workspace.toml")).unwrap();
    for target in RELEASE_TARGETS {
        assert!(
            text.contains(&format!("\"{target}\"")),
            "dist-workspace.toml does not build {target}"
        );
    }
    assert_eq!(toml_str(&dist, "unix-archive").as_deref(), Some(".tar.xz"));
    assert!(
        dist.iter().any(|l| l == r#"binaries = { "*" = ["workflow-mcp"] }"#),
        "dist ships the server only, not the test suite's fake-workflow: {dist:?}"
    );
    assert!(
        !toml_table("Cargo.toml", "profile.dist").is_empty(),
        "Cargo.toml has the [profile.dist] dist builds with"
    );

    // cargo-binstall's template, expanded as it expands it, names exactly dist's archives and their layout.
    let binstall = toml_table("Cargo.toml", "package.metadata.binstall");
    let repository = cargo_field("repository");
    let version = cargo_field("version");
    assert_eq!(
        toml_str(&binstall, "pkg-fmt").as_deref(),
        Some("txz"),
        "dist's .tar.xz is binstall's txz"
    );
    let expand = |template: &str, target: &str| {
        template
            .replace("{ repo }", &repository)
            .replace("{ version }", &version)
            .replace("{ name }", "workflow-mcp")
            .replace("{ target }", target)
            .replace("{ archive-suffix }", ".tar.xz")
            .replace("{ bin }", "workflow-mcp")
            .replace("{ binary-ext }", "")
    };
    let pkg_url = toml_str(&binstall, "pkg-url").expect("binstall pkg-url");
    let bin_dir = toml_str(&binstall, "bin-dir").expect("binstall bin-dir");
    for target in RELEASE_TARGETS {
        assert_eq!(
            expand(&pkg_url, target),
            dist_archive_url(&repository, &version, target)
        );
        assert_eq!(expand(&bin_dir, target), format!("workflow-mcp-{target}/workflow-mcp"));
    }
}

/// `dist` (cargo-dist): `$WORKFLOW_MCP_DIST`, else `target/dist/bin/dist` (where .ci/run installs it), or `None`
/// (after saying why) when a test may skip.
fn dist_bin(test: &str) -> Option<PathBuf> {
    let dist = std::env::var_os("WORKFLOW_MCP_DIST")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/dist/bin/dist"));
    if dist.exists() {
        return Some(dist);
    }
    let why = format!(
        "{test}: no dist at {}; install it with `cargo install cargo-dist --locked --version 0.34.0 --root \
         target/dist` (as .ci/run does) or set WORKFLOW_MCP_DIST",
        dist.display()
    );
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    assert!(!in_ci, "{why}");
    eprintln!("skipped: {why}");
    None
}

#[test]
fn dist_plans_the_archives_binstall_looks_for() {
    let Some(dist) = dist_bin("dist_plans_the_archives_binstall_looks_for") else {
        return;
    };
    // `dist plan` also fails when .github/workflows/release.yml is not what dist-workspace.toml generates.
    let out = std::process::Command::new(&dist)
        .args(["plan", "--output-format=json"])
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dist plan failed:\n{stderr}");
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("dist plan JSON: {e}\n{stderr}"));
    let version = cargo_field("version");
    assert_eq!(plan["announcement_tag"], json!(format!("v{version}")));
    let repository = cargo_field("repository");
    for target in RELEASE_TARGETS {
        let name = format!("workflow-mcp-{target}.tar.xz");
        let artifact = &plan["artifacts"][&name];
        assert_eq!(
            artifact["kind"],
            json!("executable-zip"),
            "dist plans no {name}: {plan}"
        );
        let assets: Vec<&str> = artifact["assets"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["path"].as_str())
            .collect();
        assert!(assets.contains(&"workflow-mcp"), "{name} holds the server: {assets:?}");
        assert!(
            !assets.contains(&"fake-workflow"),
            "{name} holds the test suite's child: {assets:?}"
        );
        // The URL binstall builds for this target is this artifact of the release of this version.
        assert!(dist_archive_url(&repository, &version, target).ends_with(&format!("/v{version}/{name}")));
    }
}
