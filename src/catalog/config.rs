//! The config file (`workflow-mcp --config FILE`) loaded into validated workflow definitions (its format is
//! `config_file`). Every problem is reported with the file, the entry and what is wrong, all at once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::Regex;

pub use super::config_file::{ConfigFile, Limits, ParamEntry, WorkflowEntry};
use super::locate::{Located, Origin};
use super::names::{PARAM_NAME_RULE, valid_env_name, valid_param_name, valid_workflow_name};
use super::param::{Delivery, Param, ParamType};
use super::tasks::TaskKind;
use super::trust::TrustGate;
use super::unsafe_env::refused_env_var;
use super::workflow::{Source, WorkflowDef};
use crate::runtime::Placement;

/// A config file, loaded and checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    /// The folder relative paths resolve against.
    pub dir: PathBuf,
    pub workflows: Vec<Arc<WorkflowDef>>,
    pub discover: Vec<PathBuf>,
    pub inherit_env: Vec<String>,
    pub limits: Limits,
    /// The state directory the config names (resolved against its folder), if it names one.
    pub state_dir: Option<PathBuf>,
    /// Problems that do not stop the server (a missing discover folder, a missing cwd).
    pub warnings: Vec<String>,
    /// Where workflows run unless their entry says otherwise (discovered ones included).
    pub default_runtime: Placement,
    /// Whether executions outlive their session unless their entry says otherwise (discovered ones included).
    pub outlive_session: bool,
    /// The kinds of task files imported from the config's folder.
    pub import: Vec<TaskKind>,
    /// How this file was chosen (`--config`, found in the project, the user's own).
    pub origin: Origin,
}

impl Config {
    /// A config found in the project runs nothing until trusted: this is what must be trusted.
    pub fn trust_gate(&self) -> Option<TrustGate> {
        (self.origin == Origin::Project).then(|| self.gate())
    }

    /// The files this config's workflows depend on, as `workflow-mcp trust` records them (the real path, so the
    /// record holds however the folder was reached).
    pub fn gate(&self) -> TrustGate {
        TrustGate {
            config: self.path.canonicalize().unwrap_or_else(|_| self.path.clone()),
            dir: self.dir.canonicalize().unwrap_or_else(|_| self.dir.clone()),
            imports: self.import.clone(),
        }
    }

    /// No config at all: an empty catalog (whose listing says how to make one), not an error.
    pub fn empty() -> Config {
        Config {
            path: PathBuf::new(),
            dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            workflows: Vec::new(),
            discover: Vec::new(),
            inherit_env: Vec::new(),
            limits: Limits::default(),
            state_dir: None,
            warnings: Vec::new(),
            default_runtime: Placement::Local,
            outlive_session: false,
            import: Vec::new(),
            origin: Origin::User,
        }
    }
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {} is not valid: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("config file {} has {} problem(s):\n  - {}", path.display(), problems.len(), problems.join("\n  - "))]
    Invalid { path: PathBuf, problems: Vec<String> },
}

/// Reads, parses and checks a config file that was found (not given): its origin decides whether it needs trust.
pub fn load_located(found: &Located) -> Result<Config, ConfigError> {
    let mut config = load(&found.path)?;
    config.origin = found.origin.clone();
    Ok(config)
}

/// Reads, parses and checks a config file given by the user (`--config`).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let de = &mut serde_json::Deserializer::from_str(&text);
    let file: ConfigFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        let message = if at.is_empty() || at == "." {
            inner.to_string()
        } else {
            format!("at {at}: {inner}")
        };
        ConfigError::Parse {
            path: path.clone(),
            message,
        }
    })?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    from_file(file, path, dir)
}

/// Checks a parsed config file; relative paths resolve against `dir`.
pub fn from_file(file: ConfigFile, path: PathBuf, dir: PathBuf) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut workflows = Vec::new();
    let mut names = HashSet::new();
    for (i, entry) in file.workflows.iter().enumerate() {
        let at = format!("workflows[{i}] \"{}\"", entry.name);
        if !names.insert(entry.name.clone()) {
            problems.push(format!(
                "{at}: the name is used by an earlier entry; names must be unique"
            ));
        }
        match workflow_from_entry(entry, &dir, file.default_runtime.as_ref().unwrap_or(&Placement::Local)) {
            Ok((def, mut warn)) => {
                warnings.extend(warn.drain(..).map(|w| format!("{at}: {w}")));
                workflows.push(Arc::new(
                    def.outliving(entry.outlive_session.unwrap_or(file.outlive_session)),
                ));
            }
            Err(errs) => problems.extend(errs.into_iter().map(|e| format!("{at}: {e}"))),
        }
    }
    for (i, var) in file.inherit_env.iter().enumerate() {
        if !valid_env_name(var) {
            problems.push(format!(
                "inherit_env[{i}]: \"{var}\" is not an environment variable name (letters, digits, _)"
            ));
        }
    }
    let limits = &file.limits;
    if limits.max_concurrent == 0 {
        problems.push("limits.max_concurrent must be at least 1".into());
    }
    if !(1000..=3_600_000).contains(&limits.client_stall_ms) {
        problems.push(format!(
            "limits.client_stall_ms must be between 1000 and 3600000, got {}",
            limits.client_stall_ms
        ));
    }
    if limits.max_line_bytes < 1024 || limits.max_line_bytes > 16 << 20 {
        problems.push(format!(
            "limits.max_line_bytes must be between 1024 and 16777216, got {}",
            limits.max_line_bytes
        ));
    }
    if let Some(per) = limits.log_bytes_per_execution
        && per < 1 << 20
    {
        problems.push(format!(
            "limits.log_bytes_per_execution must be at least 1048576 (1 MiB), got {per}"
        ));
    }
    let per = limits.log_bytes_per_execution.unwrap_or(64 << 20);
    if limits.log_bytes_total < per {
        problems.push(format!(
            "limits.log_bytes_total ({}) must be at least limits.log_bytes_per_execution ({per})",
            limits.log_bytes_total
        ));
    }
    if limits.log_disk_bytes_per_execution < 4 << 20 {
        problems.push(format!(
            "limits.log_disk_bytes_per_execution must be at least 4194304 (4 MiB), got {}",
            limits.log_disk_bytes_per_execution
        ));
    }
    if !(100..=60_000).contains(&limits.discovery_timeout_ms) {
        problems.push(format!(
            "limits.discovery_timeout_ms must be between 100 and 60000, got {}",
            limits.discovery_timeout_ms
        ));
    }
    if limits.default_timeout_ms == Some(0) {
        problems.push("limits.default_timeout_ms must be positive (or null for no timeout)".into());
    }
    let discover: Vec<PathBuf> = file.discover.iter().map(|d| dir.join(d)).collect();
    for d in &discover {
        if !d.is_dir() {
            warnings.push(format!("discover folder {} does not exist", d.display()));
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError::Invalid { path, problems });
    }
    Ok(Config {
        default_runtime: placement_in(file.default_runtime.unwrap_or_default(), &dir),
        outlive_session: file.outlive_session,
        state_dir: file.state_dir.map(|d| dir.join(d)),
        path,
        dir,
        workflows,
        discover,
        inherit_env: file.inherit_env,
        limits: file.limits,
        warnings,
        import: file.import,
        origin: Origin::Given,
    })
}

fn workflow_from_entry(
    entry: &WorkflowEntry,
    dir: &Path,
    default_runtime: &Placement,
) -> Result<(WorkflowDef, Vec<String>), Vec<String>> {
    let mut errs = Vec::new();
    let mut warnings = Vec::new();
    if !valid_workflow_name(&entry.name) {
        errs.push(
            "name must be 1-64 characters of letters, digits, '_', '-', '.', starting with a letter or digit"
                .to_owned(),
        );
    }
    let mut command = entry.command.clone();
    match command.first_mut() {
        None => errs.push("command is empty; give the program and its arguments, e.g. [\"make\", \"all\"]".into()),
        Some(program) if program.is_empty() => errs.push("command[0] (the program) is empty".into()),
        Some(program) => {
            if program.contains('/') && Path::new(program).is_relative() {
                *program = dir.join(&*program).to_string_lossy().into_owned();
            }
        }
    }
    if command.iter().any(|a| a.contains('\0')) {
        errs.push("command arguments must not contain NUL characters".into());
    }
    let cwd = match &entry.cwd {
        Some(c) => dir.join(c),
        None => dir.to_owned(),
    };
    if !cwd.is_dir() {
        warnings.push(format!(
            "cwd {} is not a folder; executions will fail to start",
            cwd.display()
        ));
    }
    for name in entry.env.keys() {
        if !valid_env_name(name) {
            errs.push(format!(
                "env key \"{name}\" is not an environment variable name (letters, digits, _)"
            ));
        }
    }
    if entry.timeout_ms == Some(0) {
        errs.push("timeout_ms must be positive".into());
    }
    if entry.max_concurrent == Some(0) {
        errs.push("max_concurrent must be at least 1".into());
    }
    let mut params = Vec::new();
    let mut param_names = HashSet::new();
    for (j, p) in entry.params.iter().enumerate() {
        if !param_names.insert(p.name.as_str()) {
            errs.push(format!("params[{j}] \"{}\": the name is used twice", p.name));
        }
        match param_from_entry(p) {
            Ok(param) => params.push(param),
            Err(e) => errs.extend(e.into_iter().map(|e| format!("params[{j}] \"{}\": {e}", p.name))),
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let def = WorkflowDef {
        name: entry.name.clone(),
        title: None,
        description: entry.description.clone(),
        command,
        params,
        cwd,
        env: entry.env.clone().into_iter().collect(),
        timeout_ms: entry.timeout_ms,
        max_concurrent: entry.max_concurrent,
        source: Source::Manifest,
        placement: placement_in(entry.runtime.clone().unwrap_or_else(|| default_runtime.clone()), dir),
        outlive_session: false,
    };
    Ok((def, warnings))
}

/// A placement with its relative paths (a Slurm `spool_dir`) resolved against the config's folder: Slurm's
/// commands run from /.
fn placement_in(placement: Placement, dir: &Path) -> Placement {
    match placement {
        Placement::Slurm(mut options) => {
            options.spool_dir = options.spool_dir.map(|s| dir.join(s));
            Placement::Slurm(options)
        }
        other => other,
    }
}

fn param_from_entry(p: &ParamEntry) -> Result<Param, Vec<String>> {
    let mut errs = Vec::new();
    if !valid_param_name(&p.name) {
        errs.push(format!("name must be {PARAM_NAME_RULE}"));
    }
    let ways = [p.arg.is_some(), p.flag.is_some(), p.positional, p.env.is_some()];
    let delivery = match ways.iter().filter(|w| **w).count() {
        1 => {
            if let Some(a) = &p.arg {
                Some(Delivery::Arg(a.clone()))
            } else if let Some(f) = &p.flag {
                Some(Delivery::Flag(f.clone()))
            } else if p.positional {
                Some(Delivery::Positional)
            } else {
                p.env.clone().map(Delivery::Env)
            }
        }
        n => {
            errs.push(format!(
                "needs exactly one of \"arg\", \"flag\", \"positional\": true, \"env\" (found {n})"
            ));
            None
        }
    };
    match &delivery {
        Some(Delivery::Flag(_)) if p.kind != ParamType::Boolean => {
            errs.push("\"flag\" is only for boolean params; use \"arg\" to pass a value".into());
        }
        Some(Delivery::Env(var)) if !valid_env_name(var) => {
            errs.push(format!("env \"{var}\" is not an environment variable name"));
        }
        Some(Delivery::Env(var)) => {
            if let Some(why) = refused_env_var(var) {
                errs.push(format!(
                    "may not be mapped to environment variable {var} ({why}); pass it as an argument instead"
                ));
            }
        }
        Some(Delivery::Arg(a) | Delivery::Flag(a)) if a.is_empty() => errs.push("the option text is empty".into()),
        _ => {}
    }
    let numeric = matches!(p.kind, ParamType::Integer | ParamType::Number);
    if (p.minimum.is_some() || p.maximum.is_some()) && !numeric {
        errs.push("minimum/maximum apply only to integer and number params".into());
    }
    if let (Some(lo), Some(hi)) = (p.minimum, p.maximum)
        && lo > hi
    {
        errs.push(format!("minimum {lo} is greater than maximum {hi}"));
    }
    let pattern = match &p.pattern {
        Some(_) if p.kind != ParamType::String => {
            errs.push("pattern applies only to string params".into());
            None
        }
        Some(src) => match Regex::new(src) {
            Ok(re) => Some(re),
            Err(e) => {
                errs.push(format!("pattern is not a valid regular expression: {e}"));
                None
            }
        },
        None => None,
    };
    if !errs.is_empty() {
        return Err(errs);
    }
    let mut param = Param {
        description: p.description.clone(),
        required: p.required,
        minimum: p.minimum,
        maximum: p.maximum,
        pattern,
        ..Param::new(&p.name, p.kind, delivery.expect("checked above"))
    };
    if let Some(allowed) = &p.allowed {
        let mut checked = Vec::new();
        for v in allowed {
            match param.check(v) {
                Ok(c) => checked.push(c),
                Err(e) => errs.push(format!("enum value {v} does not fit the param: {e}")),
            }
        }
        if checked.is_empty() && errs.is_empty() {
            errs.push("enum is empty".into());
        }
        param.allowed = Some(checked);
    }
    if let Some(d) = &p.default {
        match param.check(d) {
            Ok(c) => param.default = Some(c),
            Err(e) => errs.push(format!("default does not fit the param: {e}")),
        }
    }
    if errs.is_empty() { Ok(param) } else { Err(errs) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<Config, ConfigError> {
        let file: ConfigFile = serde_json::from_str(json).unwrap();
        from_file(file, PathBuf::from("/cfg/workflows.json"), PathBuf::from("/tmp"))
    }

    /// `outlive_session` is a workflow's (or the config's default); on Slurm either spelling leaves the job
    /// running, the runtime's own as before.
    #[test]
    fn outlive_session_is_a_workflows_or_the_configs_and_keeps_slurms_spelling() {
        let config = check(
            r#"{"outlive_session": true, "workflows": [
                {"name": "default", "command": ["x"]},
                {"name": "attached", "command": ["x"], "outlive_session": false},
                {"name": "job", "command": ["x"], "outlive_session": false,
                 "runtime": {"type": "slurm", "outlive_session": true}},
                {"name": "job2", "command": ["x"], "runtime": {"type": "slurm"}}
            ]}"#,
        )
        .unwrap();
        let by = |name: &str| config.workflows.iter().find(|w| w.name == name).unwrap();
        assert!(by("default").outlive_session);
        assert!(!by("attached").outlive_session);
        assert!(by("job").outlive_session && by("job").placement.outlives_session());
        assert!(
            by("job2").outlive_session && by("job2").placement.outlives_session(),
            "the workflow's setting reaches its Slurm job"
        );
        assert!(
            !by("default").placement.outlives_session(),
            "a local process is the supervisor's to keep"
        );
    }

    #[test]
    fn every_problem_is_named_with_its_entry() {
        let err = check(
            r#"{"workflows": [
                {"name": "a", "command": []},
                {"name": "b", "command": ["x"], "params": [
                    {"name": "n", "type": "string", "flag": "--n"},
                    {"name": "m", "type": "integer", "minimum": 5, "maximum": 1, "arg": "--m"},
                    {"name": "k", "type": "integer", "default": "x", "positional": true}
                ]},
                {"name": "a", "command": ["y"]}
            ]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/cfg/workflows.json"), "{err}");
        assert!(err.contains("workflows[0] \"a\": command is empty"), "{err}");
        assert!(
            err.contains("workflows[1] \"b\": params[0] \"n\": \"flag\" is only for boolean"),
            "{err}"
        );
        assert!(
            err.contains("params[1] \"m\": minimum 5 is greater than maximum 1"),
            "{err}"
        );
        assert!(err.contains("params[2] \"k\": default does not fit"), "{err}");
        assert!(
            err.contains("workflows[2] \"a\": the name is used by an earlier entry"),
            "{err}"
        );
    }

    #[test]
    fn a_client_stall_shorter_than_a_second_is_refused() {
        let err = check(r#"{"limits": {"client_stall_ms": 50}, "workflows": []}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("limits.client_stall_ms must be between 1000 and 3600000, got 50"),
            "{err}"
        );
        let cfg = check(r#"{"workflows": []}"#).unwrap();
        assert_eq!(cfg.limits.client_stall_ms, 30_000, "30 s by default");
    }

    #[test]
    fn a_param_mapped_to_a_variable_that_changes_how_programs_start_is_refused() {
        let err = check(
            r#"{"workflows": [
                {"name": "build", "command": ["make"], "env": {"LD_PRELOAD": "/lib/fixed.so"}, "params": [
                    {"name": "level", "type": "string", "env": "LOG_LEVEL"},
                    {"name": "x", "type": "string", "env": "LD_PRELOAD"},
                    {"name": "lib", "type": "string", "env": "DYLD_INSERT_LIBRARIES"},
                    {"name": "startup", "type": "string", "env": "BASH_ENV"},
                    {"name": "node", "type": "string", "env": "NODE_OPTIONS"},
                    {"name": "path", "type": "string", "env": "PATH"}
                ]}
            ]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "workflows[0] \"build\": params[1] \"x\": may not be mapped to environment variable LD_PRELOAD \
                 (it changes how programs are loaded); pass it as an argument instead"
            ),
            "{err}"
        );
        for (param, var) in [
            ("lib", "DYLD_INSERT_LIBRARIES"),
            ("startup", "BASH_ENV"),
            ("node", "NODE_OPTIONS"),
            ("path", "PATH"),
        ] {
            assert!(
                err.contains(&format!(
                    "\"{param}\": may not be mapped to environment variable {var} ("
                )),
                "{err}"
            );
        }
        assert!(
            err.contains("5 problem(s)"),
            "LOG_LEVEL and the fixed env are fine: {err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let dir = std::env::temp_dir().join(format!("wfmcp-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.json");
        std::fs::write(&path, r#"{"workflows": [{"name": "a", "comand": ["x"]}]}"#).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("bad.json"), "{err}");
        assert!(err.contains("workflows[0]"), "{err}");
        assert!(err.contains("unknown field `comand`"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn relative_program_and_cwd_resolve_against_the_config_folder() {
        let cfg = check(r#"{"workflows": [{"name": "a", "command": ["./run.sh", "x"], "cwd": "sub"}]}"#).unwrap();
        let wf = &cfg.workflows[0];
        assert_eq!(wf.command[0], "/tmp/./run.sh");
        assert_eq!(wf.cwd, PathBuf::from("/tmp/sub"));
        assert!(cfg.warnings.iter().any(|w| w.contains("cwd")));
    }
}
