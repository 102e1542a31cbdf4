//! The module graph: arrows point down only, as `src/lib.rs` states. A `use crate::X` (or a `crate::X::` path)
//! in a module that may not use `X` fails this test, naming the file and the line.

use std::collections::BTreeMap;
use std::path::Path;

/// Which top-level modules each module may use (besides itself). Keep in step with `src/lib.rs`.
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("clock", &[][..]),
        ("proc", &[][..]),
        ("model", &["proc"][..]),
        ("logs", &["clock", "model"][..]),
        ("runtime", &["model", "proc"][..]),
        ("store", &["clock", "model", "proc"][..]),
        ("catalog", &["proc", "runtime"][..]),
        (
            "engine",
            &["catalog", "logs", "model", "runtime", "store", "proc", "clock"][..],
        ),
        ("format", &["engine"][..]),
        ("app", &["catalog", "engine", "logs", "proc", "runtime", "store"][..]),
        ("host", &["app"][..]),
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
