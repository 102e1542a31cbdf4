//! A project's own tasks as workflows: `package.json` scripts, `Makefile` targets, `justfile` recipes and
//! `Taskfile.yml` tasks, read from the config's folder when the config's `import` names their kind. Each becomes
//! a workflow named `KIND:TASK` (`npm:test`, `make:build`, `just:deploy`, `task:lint`), run as its tool runs it
//! (`npm run X`, `make X`, `just X ARGS`, `task X`) with argv, never a shell string of ours. Reading a file runs
//! nothing of it: `just --dump` only parses, and the other files are parsed here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::param::{Delivery, Param, ParamType};
use super::workflow::{Source, WorkflowDef};
use crate::proc::ChildEnv;
use crate::proc::spawn::{helper_command, resolve_program, run_captured};
use crate::runtime::Placement;

/// A kind of task file a config may import.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// `package.json` scripts, run with the package manager its lockfile names (npm, pnpm, yarn or bun).
    Npm,
    /// `Makefile` targets that are `.PHONY` or documented with a `## comment`.
    Make,
    /// `justfile` recipes (not private ones), their parameters as positional string params.
    Just,
    /// `Taskfile.yml` tasks (not internal ones).
    Task,
}

impl TaskKind {
    pub const ALL: [TaskKind; 4] = [TaskKind::Npm, TaskKind::Make, TaskKind::Just, TaskKind::Task];

    pub fn prefix(self) -> &'static str {
        match self {
            TaskKind::Npm => "npm",
            TaskKind::Make => "make",
            TaskKind::Just => "just",
            TaskKind::Task => "task",
        }
    }

    /// The file this kind reads in `dir`, if there is one (in the order its tool looks for them).
    pub fn file(self, dir: &Path) -> Option<PathBuf> {
        let names: &[&str] = match self {
            TaskKind::Npm => &["package.json"],
            TaskKind::Make => &["GNUmakefile", "makefile", "Makefile"],
            TaskKind::Just => &["justfile", ".justfile", "Justfile"],
            TaskKind::Task => &["Taskfile.yml", "taskfile.yml", "Taskfile.yaml", "taskfile.yaml"],
        };
        names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
    }
}

/// What one import found.
#[derive(Debug, Default)]
pub struct Imported {
    pub workflows: Vec<WorkflowDef>,
    /// Tasks left out, each with why.
    pub warnings: Vec<String>,
}

/// A task as read from its file: name, description, and params (positional strings).
struct Task {
    name: String,
    description: String,
    params: Vec<Param>,
}

/// Reads `kind`'s file in `dir` into workflows (none if there is no such file).
pub fn import(kind: TaskKind, dir: &Path, placement: &Placement) -> Imported {
    let mut out = Imported::default();
    let Some(file) = kind.file(dir) else {
        return out;
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => {
            out.warnings.push(format!("cannot read {}: {e}", file.display()));
            return out;
        }
    };
    let (program, tasks) = match kind {
        TaskKind::Npm => (package_manager(dir), npm_scripts(&text, &file, &mut out.warnings)),
        TaskKind::Make => ("make", make_targets(&text)),
        TaskKind::Just => ("just", just_recipes(&file, &text, &mut out.warnings)),
        TaskKind::Task => ("task", taskfile_tasks(&text)),
    };
    for task in tasks {
        let name = format!("{}:{}", kind.prefix(), task.name);
        let fits = name.len() <= 64
            && task
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if !fits {
            out.warnings.push(format!(
                "{}: \"{}\" is left out: a workflow name is at most 64 letters, digits, '_', '-', '.', ':'",
                file.display(),
                task.name
            ));
            continue;
        }
        let mut command = vec![program.to_owned()];
        if kind == TaskKind::Npm {
            command.push("run".into());
        }
        command.push(task.name);
        out.workflows.push(WorkflowDef {
            name,
            title: None,
            description: task.description,
            command,
            params: task.params,
            cwd: dir.to_owned(),
            env: Vec::new(),
            timeout_ms: None,
            max_concurrent: None,
            source: Source::Manifest,
            placement: placement.clone(),
            outlive_session: false,
        });
    }
    out
}

/// The package manager the lockfile names; npm without one.
fn package_manager(dir: &Path) -> &'static str {
    [
        ("pnpm-lock.yaml", "pnpm"),
        ("yarn.lock", "yarn"),
        ("bun.lockb", "bun"),
        ("bun.lock", "bun"),
    ]
    .iter()
    .find(|(lock, _)| dir.join(lock).is_file())
    .map_or("npm", |(_, pm)| pm)
}

fn npm_scripts(text: &str, file: &Path, warnings: &mut Vec<String>) -> Vec<Task> {
    let json: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            warnings.push(format!("{} is not valid JSON: {e}", file.display()));
            return Vec::new();
        }
    };
    let Some(scripts) = json.get("scripts").and_then(Value::as_object) else {
        return Vec::new();
    };
    scripts
        .iter()
        .map(|(name, cmd)| Task {
            name: name.clone(),
            // package.json has no comments; the script's own command says what it does.
            description: format!("package.json script: {}", cmd.as_str().unwrap_or_default()),
            params: Vec::new(),
        })
        .collect()
}

/// Targets that are `.PHONY` or carry a `## comment` (the `make help` convention); file targets, pattern rules
/// and special targets are build steps, not tasks. The description is the `## comment`, else the `#` comment
/// line right above.
fn make_targets(text: &str) -> Vec<Task> {
    let rule = Regex::new(r"^([A-Za-z0-9_][A-Za-z0-9_./-]*(?:[ \t]+[A-Za-z0-9_][A-Za-z0-9_./-]*)*)[ \t]*::?([^=]*)$")
        .expect("a valid regex");
    let mut phony = Vec::new();
    let mut found: Vec<(String, String, bool)> = Vec::new();
    let mut comment = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(".PHONY:") {
            phony.extend(rest.split_whitespace().map(str::to_owned));
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            comment = c.trim_start_matches('#').trim().to_owned();
            continue;
        }
        let (head, doc) = match line.split_once("##") {
            Some((h, d)) => (h, Some(d.trim().to_owned())),
            None => (line.split('#').next().unwrap_or(""), None),
        };
        if let Some(c) = rule.captures(head.trim_end()) {
            for target in c[1].split_whitespace() {
                let documented = doc.is_some();
                let description = doc.clone().unwrap_or_else(|| comment.clone());
                found.push((target.to_owned(), description, documented));
            }
        }
        comment.clear();
    }
    let mut tasks: Vec<Task> = Vec::new();
    for (name, description, documented) in found {
        if (documented || phony.contains(&name)) && !tasks.iter().any(|t| t.name == name) {
            tasks.push(Task {
                name,
                description,
                params: Vec::new(),
            });
        }
    }
    tasks
}

/// A recipe parameter as positional string param: required without a default, else optional with it.
fn positional(name: &str, default: Option<String>, required: bool) -> Option<Param> {
    if !super::names::valid_param_name(name) {
        return None;
    }
    let mut p = Param::new(name, ParamType::String, Delivery::Positional);
    p.required = required && default.is_none();
    p.default = default.map(Value::String);
    Some(p)
}

/// The recipes, from `just --dump --dump-format json` when just is installed (it parses, runs nothing), else
/// from the file's recipe lines.
fn just_recipes(file: &Path, text: &str, warnings: &mut Vec<String>) -> Vec<Task> {
    let env = ChildEnv::inherited(&[]).into_vars();
    let path = env.iter().find(|(k, _)| k == "PATH").map_or("", |(_, v)| v.as_str());
    let dir = file.parent().unwrap_or(Path::new("/"));
    if let Ok(just) = resolve_program("just", path, dir) {
        let file_arg = file.to_string_lossy();
        let args = ["--justfile", &file_arg, "--dump", "--dump-format", "json"];
        let mut cmd = helper_command(&just, &args, dir, &env);
        match run_captured(&mut cmd, Duration::from_secs(10), 8 << 20, 4096) {
            Ok(c) if c.status.success() && !c.stdout_overflow => {
                if let Ok(dump) = serde_json::from_slice::<Value>(&c.stdout) {
                    return just_dump_recipes(&dump);
                }
            }
            Ok(c) => warnings.push(format!(
                "just --dump failed for {}: {}",
                file.display(),
                String::from_utf8_lossy(&c.stderr).trim()
            )),
            Err(e) => warnings.push(format!("just --dump failed for {}: {e}", file.display())),
        }
    }
    just_parsed_recipes(text)
}

fn just_dump_recipes(dump: &Value) -> Vec<Task> {
    let Some(recipes) = dump.get("recipes").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut tasks = Vec::new();
    for (name, r) in recipes {
        if r.get("private").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let mut params = Vec::new();
        for p in r.get("parameters").and_then(Value::as_array).into_iter().flatten() {
            let pname = p.get("name").and_then(Value::as_str).unwrap_or_default();
            // A default that is an expression (not a plain string) is left to just: the param is optional.
            let default = p.get("default").and_then(Value::as_str).map(str::to_owned);
            let required =
                p.get("default").is_none_or(Value::is_null) && p.get("kind").and_then(Value::as_str) != Some("star");
            params.extend(positional(pname, default, required));
        }
        tasks.push(Task {
            name: name.clone(),
            description: r.get("doc").and_then(Value::as_str).unwrap_or_default().to_owned(),
            params,
        });
    }
    tasks
}

/// Recipe lines (`name PARAM="default" +REST:`) and the comment right above, when just is not installed.
fn just_parsed_recipes(text: &str) -> Vec<Task> {
    let recipe =
        Regex::new(r"^@?([A-Za-z_][A-Za-z0-9_-]*)((?:[ \t]+[^:]+?)?)[ \t]*:([^=].*)?$").expect("a valid regex");
    let param = Regex::new(r#"^([+*]?)\$?([A-Za-z_][A-Za-z0-9_-]*)(?:=(?:"([^"]*)"|'([^']*)'|(\S+)))?$"#)
        .expect("a valid regex");
    let mut tasks = Vec::new();
    let mut comment = String::new();
    let mut private = false;
    for line in text.lines() {
        if let Some(c) = line.strip_prefix('#') {
            comment = c.trim().to_owned();
            continue;
        }
        if line.starts_with('[') {
            private |= line.contains("private");
            continue;
        }
        if let Some(c) = recipe.captures(line)
            && !line.contains(":=")
        {
            let name = c[1].to_owned();
            let mut params = Vec::new();
            for word in c[2].split_whitespace() {
                if let Some(p) = param.captures(word) {
                    let default = p.get(3).or(p.get(4)).or(p.get(5)).map(|m| m.as_str().to_owned());
                    params.extend(positional(&p[2], default, &p[1] != "*"));
                }
            }
            if !private && !name.starts_with('_') {
                tasks.push(Task {
                    name,
                    description: comment.clone(),
                    params,
                });
            }
        }
        comment.clear();
        private = false;
    }
    tasks
}

/// The tasks under `tasks:` (keys at its first indent) with their `desc:`; `internal: true` ones left out.
fn taskfile_tasks(text: &str) -> Vec<Task> {
    let key = Regex::new(r"^( +)([A-Za-z0-9_:.-]+):").expect("a valid regex");
    let field = Regex::new(r"^ +(desc|summary|internal):\s*(.*)$").expect("a valid regex");
    let mut tasks: Vec<(Task, bool)> = Vec::new();
    let (mut inside, mut indent) = (false, None);
    for line in text.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            inside = line.starts_with("tasks:");
            continue;
        }
        if !inside {
            continue;
        }
        if let Some(c) = key.captures(line) {
            let width = c[1].len();
            if indent.is_none_or(|i| i == width) {
                indent = Some(width);
                let task = Task {
                    name: c[2].to_owned(),
                    description: String::new(),
                    params: Vec::new(),
                };
                tasks.push((task, false));
                continue;
            }
        }
        if let (Some(c), Some(last)) = (field.captures(line), tasks.last_mut()) {
            let value = c[2].trim().trim_matches(|q| q == '"' || q == '\'').to_owned();
            match &c[1] {
                "internal" => last.1 = value == "true",
                "desc" => last.0.description = value,
                _ if last.0.description.is_empty() => last.0.description = value,
                _ => {}
            }
        }
    }
    tasks
        .into_iter()
        .filter(|(_, internal)| !internal)
        .map(|(t, _)| t)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_imports_phony_and_documented_targets_only() {
        let text = ".PHONY: test\n# Run the tests\ntest: build\n\tcargo test\nbuild: ## Build it\n\tcargo build\n\
                    out.o: out.c\n\tcc out.c\n%.x: %.y\n\tcp $< $@\nVAR := 1\n";
        let names: Vec<(String, String)> = make_targets(text)
            .into_iter()
            .map(|t| (t.name, t.description))
            .collect();
        assert_eq!(
            names,
            [
                ("test".to_owned(), "Run the tests".to_owned()),
                ("build".into(), "Build it".into())
            ]
        );
    }

    #[test]
    fn justfile_recipes_parse_without_just() {
        let text = "# Build it\nbuild mode=\"debug\":\n    echo {{mode}}\n\ndeploy env +flags:\n    echo\n_hidden:\n    x\n\
                    [private]\np:\n    x\nv := \"1\"\n";
        let tasks = just_parsed_recipes(text);
        let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["build", "deploy"]);
        assert_eq!(tasks[0].description, "Build it");
        assert_eq!(tasks[0].params[0].default, Some(Value::String("debug".into())));
        assert!(
            tasks[1].params.iter().all(|p| p.required),
            "env and +flags are required"
        );
    }

    #[test]
    fn taskfile_tasks_parse() {
        let text = "version: '3'\ntasks:\n  build:\n    desc: Build it\n    cmds:\n      - go build\n  \
                    hidden:\n    internal: true\n  lint:\n    cmds: [x]\n";
        let names: Vec<(String, String)> = taskfile_tasks(text)
            .into_iter()
            .map(|t| (t.name, t.description))
            .collect();
        assert_eq!(
            names,
            [
                ("build".to_owned(), "Build it".to_owned()),
                ("lint".into(), String::new())
            ]
        );
    }
}
