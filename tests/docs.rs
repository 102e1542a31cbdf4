//! The documentation: a README short enough to read, relative links (and their `#anchors`) that lead somewhere,
//! and CI running exactly the test command the README gives.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The README, the top-level documents and everything under `docs/`.
fn documents() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md", "CHANGELOG.md"]
        .iter()
        .map(|f| root().join(f))
        .collect();
    for entry in std::fs::read_dir(root().join("docs")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            files.push(entry.path());
        }
    }
    files
}

/// Markdown text outside fenced code blocks.
pub fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            if line.starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The anchors GitHub makes of a document's headings: lower case, punctuation other than `-` dropped, spaces as `-`.
fn anchors(text: &str) -> Vec<String> {
    prose(text)
        .into_iter()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// Every `](target)` of a document's prose.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn readme_is_at_most_250_lines() {
    let lines = read(&root().join("README.md")).lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines; move details into docs/ and link them"
    );
}

#[test]
fn every_relative_link_in_the_docs_leads_somewhere() {
    let mut broken = Vec::new();
    for doc in documents() {
        let text = read(&doc);
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(path)
            };
            if !target.exists() {
                broken.push(format!("{}: {link} (no such file)", doc.display()));
            } else if !anchor.is_empty() && !anchors(&read(&target)).iter().any(|a| a == anchor) {
                broken.push(format!("{}: {link} (no such heading)", doc.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn ci_runs_exactly_the_readme_test_command() {
    let readme = read(&root().join("README.md"));
    let quick_start = readme
        .split("## Quick start")
        .nth(1)
        .and_then(|section| section.split("```sh\n").nth(1))
        .expect("README has a Quick start section with a ```sh block");
    let commands: Vec<&str> = quick_start
        .split("```")
        .next()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(
        commands,
        [
            "cargo run --release -- --config examples/workflows.json < examples/session.jsonl",
            "cargo test"
        ],
        "the README's quick start gives the demo command and the test command"
    );
    let ci = read(&root().join(".ci/run"));
    let last = ci.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    assert_eq!(last.trim(), commands[1], ".ci/run ends with the README's test command");
}

/// The README's line that starts with `prefix` (inside backticks or a code block), without the backticks.
pub fn readme_line(prefix: &str) -> String {
    let readme = read(&root().join("README.md"));
    readme
        .lines()
        .find_map(|l| {
            let at = l.find(prefix)?;
            Some(l[at..].split('`').next().unwrap().trim().to_owned())
        })
        .unwrap_or_else(|| panic!("the README has no line starting with `{prefix}`"))
}

#[test]
fn every_json_snippet_in_the_readme_parses_and_starts_the_installed_server() {
    let readme = read(&root().join("README.md"));
    let mut snippets: Vec<String> = readme
        .split("```json\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().to_owned())
        .collect();
    // VS Code's one-liner carries its JSON as an argument.
    let vscode = readme_line("code --add-mcp ");
    let arg = vscode
        .strip_prefix("code --add-mcp '")
        .and_then(|a| a.strip_suffix('\''))
        .expect("code --add-mcp '{...}'");
    snippets.push(arg.to_owned());
    assert!(snippets.len() >= 3, "the README's JSON snippets: {snippets:?}");
    for snippet in &snippets {
        let value: serde_json::Value = serde_json::from_str(snippet)
            .unwrap_or_else(|e| panic!("a README JSON snippet does not parse ({e}):\n{snippet}"));
        // A client entry (an `mcpServers` map, or VS Code's single server) starts the server binary.
        let entries: Vec<&serde_json::Value> = match value.get("mcpServers") {
            Some(servers) => servers.as_object().unwrap().values().collect(),
            None if value.get("command").is_some() => vec![&value],
            None => vec![],
        };
        for entry in entries {
            let command = entry["command"].as_str().unwrap_or_default();
            let args = entry["args"].as_array().cloned().unwrap_or_default();
            let runs_from_source = command == "cargo";
            assert!(
                runs_from_source || command == "workflow-mcp" || command.ends_with("/workflow-mcp"),
                "a README client entry does not start workflow-mcp: {entry}"
            );
            // A client entry starts the server outside the project (Claude Desktop starts it in `/`).
            assert!(
                args.iter().any(|a| a == "--config" || a == "--project"),
                "a README client entry names neither a project nor a config: {entry}"
            );
        }
    }
    for client in ["claude mcp add ", "codex mcp add ", "gemini mcp add "] {
        let line = readme_line(client);
        assert!(
            line.split_whitespace().any(|w| w == "workflow-mcp"),
            "the README's {client}line does not start workflow-mcp: {line}"
        );
    }
}
