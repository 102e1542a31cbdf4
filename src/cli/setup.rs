//! Which config a command uses (given, found in the project, the user's, or none), and the commands that set one
//! up: `workflow-mcp init` (a starter config from the project's own task files) and `workflow-mcp trust`.

use std::path::{Path, PathBuf};

use crate::catalog::config::{self, ConfigError, load_located};
use crate::catalog::locate::{Origin, PROJECT_CONFIG, locate, project_dir};
use crate::catalog::tasks::{TaskKind, import};
use crate::catalog::{Config, ConfigFile};
use crate::runtime::Placement;

/// The config given with `--config`, else the one found from the project folder, else none (an empty catalog).
/// Says on stderr which one is used.
pub fn load(config: Option<&Path>, project: Option<&Path>) -> Result<Config, ConfigError> {
    if let Some(path) = config {
        return config::load(path);
    }
    let project = project_dir(project);
    match locate(&project) {
        Some(found) => {
            let config = load_located(&found)?;
            let how = match found.origin {
                Origin::Project => "found in the project",
                Origin::User => "the user's own",
                Origin::Given => "given",
            };
            tracing::info!(config = %found.path.display(), "using the config file {how}");
            if let Some(gate) = config.trust_gate().filter(|g| !g.is_trusted()) {
                tracing::warn!("{}", gate.refusal());
            }
            Ok(config)
        }
        None => {
            tracing::warn!(
                project = %project.display(),
                "no config file found ({PROJECT_CONFIG} here or above up to the repository root, or the user's \
                 config.json): serving no workflows; `workflow-mcp init` writes one"
            );
            Ok(Config::empty())
        }
    }
}

/// `workflow-mcp init`: writes `workflow-mcp.json` in the project folder importing the task files found there;
/// refuses to overwrite one. Returns the exit code.
pub fn init(project: Option<&Path>) -> u8 {
    let dir = project_dir(project);
    let path = dir.join(PROJECT_CONFIG);
    if path.exists() {
        eprintln!(
            "workflow-mcp: {} already exists; edit it, or remove it to start again",
            path.display()
        );
        return 1;
    }
    let mut file = ConfigFile::default();
    let mut said = Vec::new();
    for kind in TaskKind::ALL {
        let Some(task_file) = kind.file(&dir) else { continue };
        let found = import(kind, &dir, &Placement::default());
        let names: Vec<&str> = found.workflows.iter().map(|w| w.name.as_str()).collect();
        said.push(format!(
            "  {} ({}): {}",
            kind.prefix(),
            task_file.file_name().unwrap_or_default().to_string_lossy(),
            if names.is_empty() {
                "no tasks yet".to_owned()
            } else {
                names.join(", ")
            }
        ));
        file.import.push(kind);
    }
    let text = match serde_json::to_value(&file) {
        Ok(v) => starter(&v),
        Err(e) => {
            eprintln!("workflow-mcp: cannot write the config: {e}");
            return 1;
        }
    };
    // create_new: never overwrite a file that appeared since the check above.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
    if let Err(e) = written {
        eprintln!("workflow-mcp: cannot write {}: {e}", path.display());
        return 1;
    }
    println!("wrote {}", path.display());
    if said.is_empty() {
        println!("no package.json, Makefile, justfile or Taskfile.yml here: add workflows to its \"workflows\" list");
    } else {
        println!("it imports the project's own tasks:");
        for line in said {
            println!("{line}");
        }
    }
    println!(
        "like any config found in a project it runs nothing until you trust it; review it and the files it imports, \
         then run: workflow-mcp trust {}",
        path.display()
    );
    0
}

/// The starter file's text: only the keys a user edits first.
fn starter(full: &serde_json::Value) -> String {
    let import = full.get("import").cloned().unwrap_or_default();
    let v = serde_json::json!({"import": import, "workflows": []});
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}

/// `workflow-mcp trust [FILE]`: records FILE (default: the config found from the project folder) and the task
/// files it imports as trusted. Returns the exit code.
pub fn trust(file: Option<&Path>, project: Option<&Path>) -> u8 {
    let path: PathBuf = match file {
        Some(f) => f.to_owned(),
        None => match locate(&project_dir(project)) {
            Some(found) => found.path,
            None => {
                eprintln!(
                    "workflow-mcp: no config file found to trust ({PROJECT_CONFIG} here or above up to the \
                     repository root); name one: workflow-mcp trust FILE"
                );
                return 1;
            }
        },
    };
    let config = match config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("workflow-mcp: {e}");
            return 1;
        }
    };
    let gate = config.gate();
    match gate.trust() {
        Ok(_) => {
            let imported: Vec<String> = gate
                .imports
                .iter()
                .filter_map(|k| k.file(&gate.dir))
                .map(|f| f.display().to_string())
                .collect();
            println!("trusted {}", gate.config.display());
            if !imported.is_empty() {
                println!("and the task files it imports: {}", imported.join(", "));
            }
            println!("its workflows may run now; a change to any of these files needs trusting again");
            0
        }
        Err(e) => {
            eprintln!("workflow-mcp: {e}");
            1
        }
    }
}

/// `check`'s first line: which config file it checked, and whether it may run.
pub fn say_config(config: &Config) {
    if config.path.as_os_str().is_empty() {
        println!("no config file found; `workflow-mcp init` writes one");
        return;
    }
    let trust = match config.trust_gate() {
        None => "trusted: given or the user's own",
        Some(g) if g.is_trusted() => "found in the project, trusted",
        Some(_) => "found in the project, NOT trusted: workflow-mcp trust",
    };
    println!("config {} ({trust})", config.path.display());
}
