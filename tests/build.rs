//! How the crate is built: what an installed binary links and carries, the lints the code is held to, and std
//! doing what std does. Each fails naming the line to change.

use std::path::Path;

fn manifest() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap()
}

/// The lines of one `[section]` of Cargo.toml, comments left out.
fn section(name: &str) -> Vec<String> {
    let header = format!("[{name}]");
    manifest()
        .lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .map(|l| l.split('#').next().unwrap().trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every line of `src/` that contains `needle`, as `path:line: text`.
fn lines_with(needle: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.contains(needle) {
                let path = file.strip_prefix(root).unwrap().display();
                found.push(format!("{path}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn test_only_crates_are_not_linked_into_the_server() {
    let deps = section("dependencies");
    for feature in ["\"client\"", "\"transport-child-process\"", "\"process\""] {
        let linked: Vec<_> = deps.iter().filter(|l| l.contains(feature)).collect();
        assert!(
            linked.is_empty(),
            "{feature} is only for the tests: move it to [dev-dependencies]: {linked:?}"
        );
    }
    let dev = section("dev-dependencies").join("\n");
    assert!(
        dev.contains("transport-child-process") && dev.contains("\"process\""),
        "{dev}"
    );
}

#[test]
fn lints_hold_what_the_code_obeys() {
    let rust = section("lints.rust").join("\n");
    let clippy = section("lints.clippy").join("\n");
    for lint in ["unsafe_op_in_unsafe_fn", "unused_must_use"] {
        assert!(rust.contains(lint), "[lints.rust] lacks {lint}");
    }
    for lint in ["dbg_macro", "todo", "undocumented_unsafe_blocks"] {
        assert!(clippy.contains(lint), "[lints.clippy] lacks {lint}");
    }
}

#[test]
fn installed_binary_carries_no_debuginfo_and_profiling_keeps_symbols() {
    let release = section("profile.release");
    assert!(
        !release.iter().any(|l| l.starts_with("debug ") && !l.ends_with("false")),
        "an installed binary needs no debuginfo; profiling symbols belong in [profile.profiling]: {release:?}"
    );
    let profiling = section("profile.profiling");
    assert!(
        profiling.contains(&"inherits = \"release\"".to_owned()),
        "{profiling:?}"
    );
    assert!(
        profiling.contains(&"debug = \"line-tables-only\"".to_owned()),
        "{profiling:?}"
    );
}

#[test]
fn pipes_and_file_locks_come_from_std() {
    for call in ["libc::pipe2", "libc::flock"] {
        let found = lines_with(call);
        assert!(
            found.is_empty(),
            "std::io::pipe and File::lock/try_lock do this: {found:#?}"
        );
    }
}

#[test]
fn tool_limits_are_written_once() {
    // A schema bound names the const the handler checks against, so the two cannot drift apart.
    let literal = regex::Regex::new(r"schemars\((range|length)\([^)]*max = [0-9]").unwrap();
    let found: Vec<_> = lines_with("schemars(")
        .into_iter()
        .filter(|l| literal.is_match(l))
        .collect();
    assert!(
        found.is_empty(),
        "name the limit's const instead of a number: {found:#?}"
    );
}

/// The value of a `key = "value"` line of Cargo.toml's `[package]`.
fn package_field(key: &str) -> Option<String> {
    section("package").into_iter().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
    })
}

#[test]
fn the_crate_carries_what_crates_io_and_the_mcp_registry_need() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for key in [
        "description",
        "license",
        "repository",
        "readme",
        "keywords",
        "categories",
        "rust-version",
    ] {
        assert!(package_field(key).is_some(), "Cargo.toml [package] has no `{key}`");
    }
    let license = package_field("license").unwrap();
    let text = std::fs::read_to_string(root.join("LICENSE"))
        .unwrap_or_else(|e| panic!("the license ({license}) needs its text in LICENSE: {e}"));
    assert!(
        text.contains("MIT License"),
        "LICENSE is not the {license} license text"
    );
    // The MCP Registry proves a cargo package is this server by a visible line in the crate's README (crates.io
    // strips HTML comments): `mcp-name: io.github.OWNER/NAME`, OWNER the repository's.
    let repository = package_field("repository").unwrap();
    let owner = repository
        .strip_prefix("https://github.com/")
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("repository {repository:?} is not https://github.com/OWNER/NAME"));
    let name = format!("mcp-name: io.github.{owner}/workflow-mcp");
    let readme = std::fs::read_to_string(root.join(package_field("readme").unwrap())).unwrap();
    assert!(
        crate::docs::prose(&readme)
            .iter()
            .any(|l| l.contains(&name) && !l.contains("<!--")),
        "the README has no visible `{name}` line"
    );
}

#[test]
fn the_package_ships_what_a_build_needs_and_no_scaffolding() {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["package", "--list", "--allow-dirty", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo package --list failed:\n{stderr}");
    let listed = String::from_utf8(out.stdout).unwrap();
    let files: Vec<&str> = listed.lines().collect();
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "LICENSE",
        "README.md",
        "src/main.rs",
        "src/lib.rs",
        "src/store/migrations/0001_history.sql",
        "examples/workflows.json",
        "examples/session.jsonl",
    ] {
        assert!(files.contains(&needed), "the package lacks {needed}: {files:?}");
    }
    let scaffolding: Vec<&&str> = files
        .iter()
        .filter(|f| {
            ["tests/", "benches/", ".ci/", "scripts/", "target/"]
                .iter()
                .any(|d| f.starts_with(d))
        })
        .collect();
    assert!(
        scaffolding.is_empty(),
        "the package ships test, bench or CI files: {scaffolding:?}"
    );
    assert!(
        !stderr.contains("warning"),
        "cargo package --list warns (metadata missing?):\n{stderr}"
    );
}
