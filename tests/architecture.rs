//! The module graph: arrows point down only, as `src/lib.rs` states. A `use crate::X` (or a `crate::X::` path)
//! in a module that may not use `X` fails this test, naming the file and the line.

use std::collections::BTreeMap;
use std::path::Path;

/// Which top-level modules each module may use (besides itself). Keep in step with `src/lib.rs`.
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("clock", &[][..]),
        ("proc", &[][..]),
        ("state_dir", &[][..]),
        ("model", &["proc"][..]),
        ("logs", &["clock", "model"][..]),
        ("runtime", &["model", "proc"][..]),
        ("store", &["clock", "model", "proc", "state_dir"][..]),
        ("catalog", &["proc", "runtime"][..]),
        (
            "engine",
            &["catalog", "logs", "model", "runtime", "store", "proc", "clock"][..],
        ),
        ("format", &["engine"][..]),
        (
            "app",
            &["catalog", "engine", "logs", "proc", "runtime", "state_dir", "store"][..],
        ),
        ("host", &["app"][..]),
        ("outlive", &["engine", "proc", "runtime", "store"][..]),
        (
            "mcp",
            &["host", "app", "catalog", "engine", "logs", "format", "clock"][..],
        ),
        (
            "cli",
            &[
                "host", "app", "catalog", "engine", "logs", "format", "proc", "runtime", "store",
            ][..],
        ),
        ("schemas", &["catalog", "engine", "mcp"][..]),
    ])
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

#[test]
fn every_module_uses_only_the_modules_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed = allowed();
    let uses = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy();
        let module = top.trim_end_matches(".rs");
        if module == "main" || module == "lib" {
            continue;
        }
        let may = allowed
            .get(module)
            .unwrap_or_else(|| panic!("module {module} is missing from the rule (tests/architecture.rs, src/lib.rs)"));
        for (n, line) in std::fs::read_to_string(&file).unwrap().lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for c in uses.captures_iter(line) {
                let used = &c[1];
                if used != module && !may.contains(&used) {
                    wrong.push(format!(
                        "{}:{}: {module} uses {used}: {}",
                        rel.display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows that point up or sideways:\n{}",
        wrong.join("\n")
    );
}

/// Inside a module, its files from the bottom up: a file may use (`super::X`, `crate::module::X`) only the files
/// listed before it, so the files of a module form a one-way order. Every file of a listed module must be named
/// (`mod.rs` only declares; a module's `tests.rs` sits on top). Adding a module is one line.
const FILE_ORDERS: &[(&str, &[&str])] = &[
    (
        "proc",
        &["signal", "spawn", "scan", "reaper", "env", "notify", "watchdog"],
    ),
    ("model", &["state", "instance", "job", "output", "progress"]),
    (
        "cli",
        &["terminal", "args", "setup", "inspect", "history", "cancel", "run"],
    ),
    (
        "store",
        &[
            "db",
            "record",
            "error",
            "writer",
            "open",
            "reads",
            "changes",
            "instances",
            "retention",
        ],
    ),
    (
        "logs",
        &[
            "scan", "render", "segment", "compact", "disk", "snapshot", "budget", "slots", "log", "page", "query",
        ],
    ),
    (
        "mcp",
        &[
            "types",
            "schema",
            "text",
            "transport",
            "waiting",
            "reply",
            "resources",
            "subscriptions",
            "tasks",
            "server",
            "serve",
        ],
    ),
    (
        "engine",
        &[
            "progress",
            "execution",
            "status",
            "view",
            "follow",
            "drain",
            "table",
            "config",
            "detach",
            "records",
            "launch",
            "supervisor",
            "executor",
            "outliving",
            "listing",
            "shared_history",
            "runner",
        ],
    ),
];

/// The sibling files a file's text names through `super::` or `crate::<module>::` paths, with their line
/// numbers: `use super::{a::X, b::{Y, Z}}` names `a` and `b`. Comment lines and the unit tests at the end of a
/// file (`#[cfg(test)] mod tests`) are skipped.
fn sibling_references(text: &str, module: &str) -> Vec<(usize, String)> {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    let path = regex::Regex::new(&format!(r"\b(?:super|crate::{module})::")).unwrap();
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for m in path.find_iter(line) {
            // The rest of the path may continue on the lines below (a `use` list rustfmt wrapped).
            let rest: String = text.lines().skip(n).collect::<Vec<_>>().join("\n");
            let after = &rest[m.end()..];
            found.extend(first_segments(after).into_iter().map(|s| (n + 1, s)));
        }
    }
    found
}

/// The first path segment of each path that starts here: `a::X` gives `a`; `{a::X, b}` gives `a` and `b`.
fn first_segments(after: &str) -> Vec<String> {
    if let Some(list) = after.strip_prefix('{') {
        let mut depth = 0;
        let mut items = Vec::new();
        let mut item = String::new();
        for c in list.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(std::mem::take(&mut item));
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        items.push(item);
        return items
            .iter()
            .filter_map(|i| i.trim().split("::").next().map(|s| s.trim().to_owned()))
            .filter(|s| !s.is_empty())
            .collect();
    }
    let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    vec![name]
}

#[test]
fn files_inside_a_module_use_only_the_files_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for (module, order) in FILE_ORDERS {
        let dir = src.join(module);
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let file = entry.unwrap().path();
            if file.is_dir() || file.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let name = file.file_stem().unwrap().to_string_lossy().into_owned();
            if name == "mod" {
                continue;
            }
            let rank = if name == "tests" {
                order.len()
            } else {
                checked += 1;
                order.iter().position(|f| *f == name).unwrap_or_else(|| {
                    panic!(
                        "src/{module}/{name}.rs is not in FILE_ORDERS (tests/architecture.rs); add it where it belongs"
                    )
                })
            };
            let text = std::fs::read_to_string(&file).unwrap();
            for (line, used) in sibling_references(&text, module) {
                if let Some(used_rank) = order.iter().position(|f| *f == used)
                    && used_rank >= rank
                    && used != name
                {
                    wrong.push(format!(
                        "src/{module}/{name}.rs:{line}: uses {used}, which is not below it"
                    ));
                }
            }
        }
        assert_eq!(checked, order.len(), "every file FILE_ORDERS lists for {module} exists");
    }
    assert!(
        wrong.is_empty(),
        "files that use a file above them (order: tests/architecture.rs FILE_ORDERS):\n{}",
        wrong.join("\n")
    );
}

/// One word per concept: "store" is the SQLite history (`src/store`), never an execution's log, and "runtime" is
/// where an execution runs, never a tokio handle.
#[test]
fn store_and_runtime_each_name_one_thing() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let store_type = regex::Regex::new(r"\b(?:struct|enum|trait|type|mod)\s+(\w*Store(?:[A-Z]\w*)?|store)\b").unwrap();
    let handle = regex::Regex::new(r"\b(\w*runtime\w*)\s*:\s*(?:tokio::runtime::)?Handle\b").unwrap();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            if !rel.starts_with("store")
                && rel != Path::new("lib.rs")
                && let Some(c) = store_type.captures(line)
            {
                wrong.push(format!("{}:{}: `{}` outside src/store", rel.display(), n + 1, &c[1]));
            }
            if let Some(c) = handle.captures(line) {
                wrong.push(format!("{}:{}: tokio handle named `{}`", rel.display(), n + 1, &c[1]));
            }
        }
    }
    assert!(wrong.is_empty(), "names that mean two things:\n{}", wrong.join("\n"));
}

/// The state directory's layout is written in one place, `src/state_dir.rs`: no other file composes the paths of
/// what lives in it (its unit tests apart).
#[test]
fn the_state_directory_layout_is_written_once() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layout = regex::Regex::new(r#"join\("(history\.db|logs|instances|slurm)"\)|\{instance\}\.lock"#).unwrap();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        if rel == Path::new("state_dir.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            if !line.trim_start().starts_with("//") && layout.is_match(line) {
                wrong.push(format!("{}:{}: {}", rel.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "state directory paths composed outside src/state_dir.rs:\n{}",
        wrong.join("\n")
    );
}

/// Errors are typed (thiserror enums), never a bare `String`: no `Result<_, String>` outside unit tests.
#[test]
fn no_result_has_a_string_error() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let stringly = regex::Regex::new(r"Result<[^>]*,\s*String>").unwrap();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            if !line.trim_start().starts_with("//") && stringly.is_match(line) {
                wrong.push(format!("{}:{}: {}", rel.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "errors as strings (make them thiserror enums):\n{}",
        wrong.join("\n")
    );
}
