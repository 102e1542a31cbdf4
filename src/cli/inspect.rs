//! `workflow-mcp list` and `workflow-mcp check`: the catalog as a human reads it, and every problem with the
//! config and discovery.

use std::fmt::Write as _;

use crate::app::{catalog, checking_runtimes};
use crate::catalog::param::Delivery;
use crate::catalog::{Config, Source, WorkflowDef, WorkflowInfo};
use crate::proc::ChildEnv;
use crate::runtime::{Launch, Runtime};

/// One param as a line: name, type and constraints, required/default, how it reaches the command.
fn param_line(p: &crate::catalog::Param) -> String {
    let mut line = format!("    {:<16} {}", p.name, p.expected());
    if let Some(d) = &p.default {
        let _ = write!(line, ", default {d}");
    } else if p.required {
        line.push_str(", required");
    }
    let how = match &p.delivery {
        Delivery::Arg(a) => format!("{a} VALUE"),
        Delivery::Flag(f) => format!("{f} when true"),
        Delivery::Positional => "positional".to_owned(),
        Delivery::Env(v) => format!("env {v}"),
    };
    let _ = write!(line, "  [{how}]");
    if !p.description.is_empty() {
        let _ = write!(line, "  {}", p.description);
    }
    line
}

fn describe(w: &WorkflowDef) -> String {
    let source = match w.source {
        Source::Manifest => "manifest".to_owned(),
        Source::Discovered => format!("discovered: {}", w.command[0]),
    };
    let mut out = format!("{} ({source})", w.name);
    if let Some(t) = &w.title {
        let _ = write!(out, " - {t}");
    }
    if !w.description.is_empty() {
        let _ = write!(out, "\n    {}", w.description);
    }
    let _ = write!(out, "\n    command: {}", w.command.join(" "));
    if let Some(ms) = w.timeout_ms {
        let _ = write!(out, "; timeout {ms} ms");
    }
    if let Some(n) = w.max_concurrent {
        let _ = write!(out, "; at most {n} at once");
    }
    out.push('\n');
    if w.params.is_empty() {
        out.push_str("    (no params)\n");
    }
    for p in &w.params {
        out.push_str(&param_line(p));
        out.push('\n');
    }
    out
}

/// `list`: every workflow with its params (discovery runs first). Returns the exit code.
pub fn list(config: &Config, json: bool) -> u8 {
    let catalog = catalog(config);
    let found = catalog.refresh();
    for p in found.problems.iter().chain(&found.warnings) {
        eprintln!("warning: {p}");
    }
    let all = catalog.all();
    if json {
        let out = serde_json::json!({
            "workflows": all.iter().map(|w| WorkflowInfo::from(w.as_ref())).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out).expect("the catalog is JSON"));
        return 0;
    }
    if all.is_empty() {
        println!("no workflows in {}", config.path.display());
    }
    for w in all.iter() {
        println!("{}", describe(w));
    }
    0
}

/// `check`: the config's warnings, each manifest workflow's program and folder, and discovery. Returns the exit
/// code: 0 when nothing is wrong, 1 otherwise.
pub fn check(config: &Config) -> u8 {
    let mut problems: Vec<String> = config.warnings.clone();
    let base = ChildEnv::inherited(&config.inherit_env);
    // Imported tasks (npm:X, make:X, ...) are checked like manifest entries: is their tool installed?
    let catalog = catalog(config);
    let found = catalog.refresh();
    let all = catalog.all();
    let runtimes = checking_runtimes();
    for w in all.iter().filter(|w| w.source == Source::Manifest) {
        let mut env = base.clone();
        env.extend(&w.env);
        let launch = Launch {
            argv: w.command.clone(),
            env,
            cwd: w.cwd.clone(),
            marker: String::new(),
            placement: w.placement.clone(),
            timeout: None,
        };
        let label = runtimes.label(&w.placement);
        problems.extend(runtimes.check(&launch).into_iter().map(|p| match label {
            Some(label) => format!("workflow \"{}\" ({label}): {p}", w.name),
            None => format!("workflow \"{}\": {p}", w.name),
        }));
    }
    problems.extend(found.problems);
    for w in &found.warnings {
        eprintln!("warning: {w}");
    }
    let discovered = all.iter().filter(|w| w.source == Source::Discovered).count();
    println!(
        "{}: {} workflow(s) ({} from the manifest, {discovered} discovered)",
        config.path.display(),
        all.len(),
        all.len() - discovered
    );
    if problems.is_empty() {
        println!("no problems found");
        0
    } else {
        println!("{} problem(s):", problems.len());
        for p in &problems {
            println!("  - {p}");
        }
        1
    }
}
