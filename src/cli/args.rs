//! Command-line parsing: `workflow-mcp [serve] --config FILE`, `list`, `check`, `run NAME --param k=v`,
//! `history [--running]`, `status ID`, `logs ID [--follow]`, `cancel ID`, `help [COMMAND]`. Options are read by `lexopt`; `--` ends them, so what follows is positional.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use lexopt::prelude::*;

pub const USAGE: &str = "\
workflow-mcp: an MCP server over stdio that runs workflows and lets an agent follow their status and logs

Usage:
  workflow-mcp [serve] [--config FILE]   serve MCP over stdin/stdout (the default command)
  workflow-mcp list    --config FILE     show the workflows and their params
  workflow-mcp check   --config FILE     check the config and discovery; exit 1 if anything is wrong
  workflow-mcp run NAME --config FILE [--param KEY=VALUE]...
                                         run a workflow here, streaming its output; exits with its exit code
  workflow-mcp history [--running]       the executions in the history, newest first; --running: only those
                                         queued or running, with the process that owns each
  workflow-mcp status ID                 one execution's status
  workflow-mcp logs ID [--follow]        one execution's output; --follow waits for the end and exits with
                                         its exit code
  workflow-mcp cancel ID                 stop an execution, whichever process on the state directory runs it
  workflow-mcp init                      write workflow-mcp.json here, importing the project's own tasks
  workflow-mcp trust [FILE]              allow a config found in the project (and its task files) to run

Options:
  -c, --config FILE   the config file (default: $WORKFLOW_MCP_CONFIG, else workflow-mcp.json in the project
                      folder or above it up to the repository root, else
                      $XDG_CONFIG_HOME/workflow-mcp/config.json; none: an empty catalog)
      --project DIR   the project folder (default: $CLAUDE_PROJECT_DIR, else the working directory); for
                      clients that start servers in / (Claude Desktop)
      --state-dir DIR where the history and logs are kept (default: the config's state_dir, else
                      $XDG_STATE_HOME/workflow-mcp, else ~/.local/state/workflow-mcp)
      --ephemeral     serve/run: keep history in memory only (gone when the process exits)
  -h, --help          show help (also: workflow-mcp COMMAND --help)
  -V, --version       show the version

Diagnostics go to stderr; set WORKFLOW_MCP_LOG (e.g. debug, warn) to change how much.
";

const SERVE_HELP: &str = "\
workflow-mcp serve --config FILE [--state-dir DIR | --ephemeral]

Serves MCP (JSON-RPC, one message per line) on stdin/stdout. stdout carries protocol messages only; diagnostics
go to stderr. End of input means no more requests: every request already received is answered, then every
running workflow is stopped and the server exits. SIGTERM/SIGINT answer pending calls at once, stop every
workflow and exit. `serve` may be left out: `workflow-mcp --config FILE` does the same.

Every execution and its output are kept in the state directory (--state-dir DIR, the config's state_dir, else
$XDG_STATE_HOME/workflow-mcp, else ~/.local/state/workflow-mcp), so a restarted server — or a second one on
the same directory — sees them; --ephemeral keeps them in memory only.
";

const INIT_HELP: &str = "\
workflow-mcp init [--project DIR]

Writes workflow-mcp.json in the project folder, importing the project's own tasks it finds there
(package.json scripts as npm:NAME, Makefile targets as make:NAME, justfile recipes as just:NAME, Taskfile.yml
tasks as task:NAME), and prints what it did. Refuses to overwrite an existing file. Like any config found in a
project, it runs nothing until you trust it: workflow-mcp trust.
";

const TRUST_HELP: &str = "\
workflow-mcp trust [FILE] [--project DIR]

Allows a config file found in a project (default: the one the server would find) and the task files it
imports to run: records their path and content digest in your state folder ($XDG_STATE_HOME/workflow-mcp/trust,
else ~/.local/state/workflow-mcp/trust). A later change to any of them needs trusting again. Review the files
first: their commands will run when an agent asks.
";

const LIST_HELP: &str = "\
workflow-mcp list --config FILE [--json]

Lists the workflows of the config file (manifest entries and discovered executables) with their params:
type, required or default, allowed values, and how each reaches the command. --json prints what the
list_workflows tool returns.
";

const CHECK_HELP: &str = "\
workflow-mcp check --config FILE

Checks the config file and asks every executable in the discovery folders for its metadata. Prints every
problem found (and warnings), then exits 0 if there was none and 1 otherwise.
";

const RUN_HELP: &str = "\
workflow-mcp run NAME --config FILE [--param KEY=VALUE]... [--params JSON] [--state-dir DIR | --ephemeral]

Runs workflow NAME here, on the same engine the server uses, streaming its output: stdout lines as they are,
stderr lines marked with '!' when stdout is not a terminal (in colour when it is). Structured events update
a progress line on a terminal. Exits with the workflow's exit code (128+N when killed by signal N, 124 on
timeout, 127 when it cannot start, 1 when another client cancelled it); Ctrl-C stops the workflow (SIGTERM,
then SIGKILL) and exits 130.

  -p, --param KEY=VALUE   a param value (numbers and booleans are converted by the param's type)
      --params JSON       param values as one JSON object
";

const HISTORY_HELP: &str = "\
workflow-mcp history [--state-dir DIR | --config FILE] [--workflow NAME] [--state STATE | --running] [--limit N]
                     [--json]

Lists the executions in the history (what every server on this state directory ran), newest first: id,
workflow, state, exit code or signal, duration, start time. --json prints what list_executions returns.

--running lists only the queued and running ones, each with the process that owns it: `server pid N` (an MCP
server or `workflow-mcp run`; its executions end with it) or `detached (supervisor pid N)` (an execution that
outlives the session that started it). One whose owner is gone is shown lost (`gone (was server pid N)`): it
is no longer running, nor can anyone reach it. With --json each execution also has `owner`: {role, pid,
instance, alive}.
";

const STATUS_HELP: &str = "\
workflow-mcp status ID [--state-dir DIR | --config FILE] [--json]

Prints one execution's status from the history: state, exit code or signal, times, output counts, progress,
and for a failure its last stderr lines. --json prints what get_status returns. Exits 1 if there is no such
execution.
";

const LOGS_HELP: &str = "\
workflow-mcp logs ID [--state-dir DIR | --config FILE] [--follow]

Prints one execution's output from its log files, stdout lines as they are and stderr lines marked '! '.
--follow keeps printing lines as they are written until the execution ends, then exits with its exit code
(128+N for a signal, 124 for a timeout, 127 when it could not start, 1 when cancelled or lost) — a shell or an
agent can wait on it.
";

const CANCEL_HELP: &str = "\
workflow-mcp cancel ID [--state-dir DIR | --config FILE]

Stops an execution, whichever process on the state directory runs it (a server, another session's server, the
supervisor of a detached execution): a queued one never starts; a running one's whole process tree gets
SIGTERM, the grace period (the config's limits.grace_ms, else 5 s) to exit, then SIGKILL. Waits until it is
final, prints its final state and exits 0. Exits 1, saying why, when there is no such execution, when it has
already ended, or when the history cannot be read.
";

/// Where history is kept, as the command line says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateOptions {
    pub state_dir: Option<PathBuf>,
    pub ephemeral: bool,
}

/// Which config to use: the one given, else the one found from the project folder.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigChoice {
    pub config: Option<PathBuf>,
    pub project: Option<PathBuf>,
}

impl From<&str> for ConfigChoice {
    fn from(config: &str) -> Self {
        ConfigChoice {
            config: Some(config.into()),
            project: None,
        }
    }
}

impl From<OsString> for ConfigChoice {
    fn from(config: OsString) -> Self {
        ConfigChoice {
            config: Some(config.into()),
            project: None,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Serve {
        config: ConfigChoice,
        state: StateOptions,
    },
    List {
        config: ConfigChoice,
        json: bool,
    },
    Check {
        config: ConfigChoice,
    },
    Run {
        config: ConfigChoice,
        workflow: String,
        params: Vec<(String, String)>,
        params_json: Option<String>,
        state: StateOptions,
    },
    History {
        config: Option<PathBuf>,
        state_dir: Option<PathBuf>,
        workflow: Option<String>,
        state: Option<String>,
        limit: usize,
        /// Only the unfinished executions, with their owners.
        running: bool,
        json: bool,
    },
    Status {
        config: Option<PathBuf>,
        state_dir: Option<PathBuf>,
        id: String,
        json: bool,
    },
    Logs {
        config: Option<PathBuf>,
        state_dir: Option<PathBuf>,
        id: String,
        follow: bool,
    },
    Cancel {
        config: Option<PathBuf>,
        state_dir: Option<PathBuf>,
        id: String,
    },
    Init {
        project: Option<PathBuf>,
    },
    Trust {
        file: Option<PathBuf>,
        project: Option<PathBuf>,
    },
    /// Print this text to stdout and exit 0.
    Help(&'static str),
    Version,
}

/// A command named on the command line.
#[derive(Clone, Copy, PartialEq)]
enum Named {
    Serve,
    List,
    Check,
    Run,
    History,
    Status,
    Logs,
    Cancel,
    Init,
    Trust,
}

impl Named {
    fn from_name(name: &OsStr) -> Option<Named> {
        match name.to_str()? {
            "serve" => Some(Named::Serve),
            "list" => Some(Named::List),
            "check" => Some(Named::Check),
            "run" => Some(Named::Run),
            "history" => Some(Named::History),
            "status" => Some(Named::Status),
            "logs" => Some(Named::Logs),
            "cancel" => Some(Named::Cancel),
            "init" => Some(Named::Init),
            "trust" => Some(Named::Trust),
            _ => None,
        }
    }

    fn help(self) -> &'static str {
        match self {
            Named::Serve => SERVE_HELP,
            Named::List => LIST_HELP,
            Named::Check => CHECK_HELP,
            Named::Run => RUN_HELP,
            Named::History => HISTORY_HELP,
            Named::Status => STATUS_HELP,
            Named::Logs => LOGS_HELP,
            Named::Cancel => CANCEL_HELP,
            Named::Init => INIT_HELP,
            Named::Trust => TRUST_HELP,
        }
    }
}

/// A command line this program cannot run: its message is a usage message (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(
        "unknown command \"{}\"; the commands are serve, list, check, run, history, status, logs, cancel, init, trust and \
         help",
        .0.to_string_lossy()
    )]
    UnknownCommand(OsString),
    #[error("{0} needs a value; see --help")]
    MissingValue(String),
    #[error("unknown option \"{0}\"; see --help")]
    UnknownOption(String),
    #[error("unexpected argument \"{}\"; see --help", .0.to_string_lossy())]
    UnexpectedArgument(OsString),
    #[error("{option} takes no value, got \"{}\"; give {option} alone", .value.to_string_lossy())]
    UnexpectedValue { option: String, value: OsString },
    #[error("argument {0:?} is not valid UTF-8")]
    NonUnicodeValue(OsString),
    /// The parser's own sentence, or one of ours it carried.
    #[error(transparent)]
    Other(lexopt::Error),
}

/// Parses the arguments after the program name. The error is a usage message (exit 2).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut args = args.into_iter().peekable();
    // The command, when there is one, is the first argument; without one the command is `serve`.
    let named = match args.peek() {
        Some(first) if first == "help" => {
            args.next();
            return help(lexopt::Parser::from_args(args)).map_err(usage_message);
        }
        Some(first) if !first.as_encoded_bytes().starts_with(b"-") => {
            let named = Named::from_name(first).ok_or_else(|| UsageError::UnknownCommand(first.clone()))?;
            args.next();
            Some(named)
        }
        _ => None,
    };
    command(named, lexopt::Parser::from_args(args)).map_err(usage_message)
}

/// `help [COMMAND]`: the text `COMMAND --help` prints.
fn help(mut parser: lexopt::Parser) -> Result<Command, lexopt::Error> {
    let mut topic = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Value(name) if topic.is_none() => topic = Some(name),
            Short('h') | Long("help") => {}
            arg => return Err(arg.unexpected()),
        }
    }
    match topic {
        None => Ok(Command::Help(USAGE)),
        Some(name) => match Named::from_name(&name) {
            Some(named) => Ok(Command::Help(named.help())),
            None => Err(UsageError::UnknownCommand(name).to_string().into()),
        },
    }
}

/// The options and positional arguments of a command (`None`: none named, so `serve`).
fn command(named: Option<Named>, mut parser: lexopt::Parser) -> Result<Command, lexopt::Error> {
    let mut config = None;
    let mut project = None;
    let mut json = false;
    let mut params = Vec::new();
    let mut params_json = None;
    let mut positional = Vec::new();
    let mut state = StateOptions::default();
    let (mut workflow, mut state_filter, mut limit, mut follow, mut running) = (None, None, 20usize, false, false);
    // The commands on a state directory's history (no catalog): they take --state-dir or --config only.
    let reads_history = matches!(
        named,
        Some(Named::History | Named::Status | Named::Logs | Named::Cancel)
    );
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(named.map_or(USAGE, Named::help))),
            Short('V') | Long("version") => return Ok(Command::Version),
            Short('c') | Long("config") => config = Some(PathBuf::from(parser.value()?)),
            Long("project") if !reads_history => project = Some(PathBuf::from(parser.value()?)),
            Long("json") if matches!(named, Some(Named::List | Named::History | Named::Status)) => json = true,
            Long("state-dir") => state.state_dir = Some(PathBuf::from(parser.value()?)),
            Long("ephemeral") if !reads_history => state.ephemeral = true,
            Long("workflow") if named == Some(Named::History) => workflow = Some(parser.value()?.string()?),
            Long("state") if named == Some(Named::History) => state_filter = Some(parser.value()?.string()?),
            Long("running") if named == Some(Named::History) => running = true,
            Long("limit") if named == Some(Named::History) => {
                let v = parser.value()?.string()?;
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--limit takes a positive number, got \"{v}\""))?;
            }
            Long("follow") | Short('f') if named == Some(Named::Logs) => follow = true,
            Short('p') | Long("param") if named == Some(Named::Run) => {
                let kv = parser.value()?.string()?;
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("--param takes KEY=VALUE, got \"{kv}\""))?;
                params.push((k.to_owned(), v.to_owned()));
            }
            Long("params") if named == Some(Named::Run) => params_json = Some(parser.value()?.string()?),
            Value(value) => positional.push(value),
            arg => return Err(arg.unexpected()),
        }
    }
    if running && state_filter.is_some() {
        return Err("--running and --state exclude each other: give one".into());
    }
    if state.ephemeral && state.state_dir.is_some() {
        return Err("--ephemeral and --state-dir exclude each other: give one".into());
    }
    let config = config.or_else(|| std::env::var_os("WORKFLOW_MCP_CONFIG").map(PathBuf::from));
    let mut positional = positional.into_iter();
    let id = |positional: &mut std::vec::IntoIter<OsString>, what: &str| -> Result<String, lexopt::Error> {
        positional
            .next()
            .ok_or_else(|| format!("{what} needs an execution id: workflow-mcp {what} ID (see workflow-mcp history)"))?
            .string()
    };
    if reads_history {
        let command = match named {
            Some(Named::History) => Command::History {
                config,
                state_dir: state.state_dir,
                workflow,
                state: state_filter,
                limit,
                running,
                json,
            },
            Some(Named::Status) => Command::Status {
                id: id(&mut positional, "status")?,
                config,
                state_dir: state.state_dir,
                json,
            },
            Some(Named::Cancel) => Command::Cancel {
                id: id(&mut positional, "cancel")?,
                config,
                state_dir: state.state_dir,
            },
            _ => Command::Logs {
                id: id(&mut positional, "logs")?,
                config,
                state_dir: state.state_dir,
                follow,
            },
        };
        return match positional.next() {
            Some(extra) => Err(lexopt::Error::UnexpectedArgument(extra)),
            None => Ok(command),
        };
    }
    let config = ConfigChoice { config, project };
    let command = match named.unwrap_or(Named::Serve) {
        Named::History | Named::Status | Named::Logs | Named::Cancel => unreachable!("handled above"),
        Named::Init => Command::Init {
            project: config.project,
        },
        Named::Trust => Command::Trust {
            file: positional.next().map(PathBuf::from).or(config.config),
            project: config.project,
        },
        Named::Serve => Command::Serve { config, state },
        Named::List => Command::List { config, json },
        Named::Check => Command::Check { config },
        Named::Run => Command::Run {
            config,
            workflow: positional
                .next()
                .ok_or("run needs the workflow's name: workflow-mcp run NAME --config FILE")?
                .string()?,
            params,
            params_json,
            state,
        },
    };
    match positional.next() {
        Some(extra) => Err(lexopt::Error::UnexpectedArgument(extra)),
        None => Ok(command),
    }
}

/// Words a parsing error the way this program's other usage errors read.
fn usage_message(e: lexopt::Error) -> UsageError {
    match e {
        lexopt::Error::MissingValue { option: Some(option) } => UsageError::MissingValue(option),
        lexopt::Error::UnexpectedOption(option) => UsageError::UnknownOption(option),
        lexopt::Error::UnexpectedArgument(value) => UsageError::UnexpectedArgument(value),
        lexopt::Error::UnexpectedValue { option, value } => UsageError::UnexpectedValue { option, value },
        lexopt::Error::NonUnicodeValue(value) => UsageError::NonUnicodeValue(value),
        e => UsageError::Other(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from)).map_err(|e| e.to_string())
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            p(&["--config", "a.json"]),
            Ok(Command::Serve {
                config: "a.json".into(),
                state: StateOptions::default()
            })
        );
        assert_eq!(
            p(&["serve", "-c", "a.json"]),
            Ok(Command::Serve {
                config: "a.json".into(),
                state: StateOptions::default()
            })
        );
        assert_eq!(
            p(&["list", "--config=a.json", "--json"]),
            Ok(Command::List {
                config: "a.json".into(),
                json: true
            })
        );
        assert_eq!(
            p(&["run", "build", "--config", "a.json", "-p", "jobs=4", "--param", "x=a=b"]),
            Ok(Command::Run {
                config: "a.json".into(),
                workflow: "build".into(),
                params: vec![("jobs".into(), "4".into()), ("x".into(), "a=b".into())],
                params_json: None,
                state: StateOptions::default()
            })
        );
        assert_eq!(p(&["run", "--help"]), Ok(Command::Help(RUN_HELP)));
    }

    #[test]
    fn mistakes_are_named() {
        assert!(
            p(&["--config", "a", "--bogus"])
                .unwrap_err()
                .contains("unknown option \"--bogus\"")
        );
        assert!(
            p(&["run", "--config", "a"])
                .unwrap_err()
                .contains("run needs the workflow's name")
        );
        assert!(
            p(&["run", "x", "--config", "a", "-p", "novalue"])
                .unwrap_err()
                .contains("KEY=VALUE")
        );
        assert!(p(&["--config"]).unwrap_err().contains("--config needs a value"));
        assert!(
            p(&["list", "--config", "a", "--json=false"])
                .unwrap_err()
                .contains("--json takes no value, got \"false\"")
        );
        assert!(p(&["lsit"]).unwrap_err().contains("unknown command \"lsit\""));
        assert!(
            p(&["run", "x", "--config", "a", "--", "--json"])
                .unwrap_err()
                .contains("unexpected argument \"--json\"")
        );
    }

    #[test]
    fn double_dash_ends_options() {
        assert_eq!(
            p(&["run", "-c", "a.json", "--", "-x"]),
            Ok(Command::Run {
                config: "a.json".into(),
                workflow: "-x".into(),
                params: vec![],
                params_json: None,
                state: StateOptions::default()
            })
        );
    }

    #[test]
    fn history_commands_take_a_state_dir_and_need_no_config() {
        assert_eq!(
            p(&["logs", "abc", "--state-dir", "/s", "--follow"]),
            Ok(Command::Logs {
                config: None,
                state_dir: Some("/s".into()),
                id: "abc".into(),
                follow: true
            })
        );
        assert_eq!(
            p(&["serve", "-c", "a.json", "--ephemeral"]),
            Ok(Command::Serve {
                config: "a.json".into(),
                state: StateOptions {
                    state_dir: None,
                    ephemeral: true
                }
            })
        );
        assert_eq!(
            p(&["cancel", "abc", "--state-dir", "/s"]),
            Ok(Command::Cancel {
                config: None,
                state_dir: Some("/s".into()),
                id: "abc".into(),
            })
        );
        assert!(p(&["cancel"]).unwrap_err().contains("cancel needs an execution id"));
        assert!(
            p(&["cancel", "abc", "--ephemeral"])
                .unwrap_err()
                .contains("unknown option \"--ephemeral\"")
        );
        assert!(matches!(
            p(&["history", "--running"]),
            Ok(Command::History { running: true, .. })
        ));
        assert!(
            p(&["history", "--running", "--state", "lost"])
                .unwrap_err()
                .contains("--running and --state exclude each other")
        );
        assert!(p(&["status"]).unwrap_err().contains("status needs an execution id"));
        assert!(
            p(&["-c", "a", "--ephemeral", "--state-dir", "/s"])
                .unwrap_err()
                .contains("exclude each other")
        );
        assert!(
            p(&["history", "--limit", "0"])
                .unwrap_err()
                .contains("--limit takes a positive number")
        );
    }

    #[test]
    fn without_a_config_the_project_folder_decides() {
        assert_eq!(
            p(&["--project", "/p"]),
            Ok(Command::Serve {
                config: ConfigChoice {
                    config: None,
                    project: Some("/p".into())
                },
                state: StateOptions::default()
            })
        );
        assert_eq!(p(&["init"]), Ok(Command::Init { project: None }));
        assert_eq!(
            p(&["trust", "x.json"]),
            Ok(Command::Trust {
                file: Some("x.json".into()),
                project: None
            })
        );
        assert!(
            p(&["trust", "a", "b"])
                .unwrap_err()
                .contains("unexpected argument \"b\"")
        );
    }

    #[test]
    fn help_names_a_command() {
        assert_eq!(p(&["help"]), Ok(Command::Help(USAGE)));
        assert_eq!(p(&["help", "serve"]), Ok(Command::Help(SERVE_HELP)));
        assert_eq!(p(&["help", "list"]), Ok(Command::Help(LIST_HELP)));
        assert_eq!(p(&["help", "check"]), Ok(Command::Help(CHECK_HELP)));
        assert_eq!(p(&["help", "run"]), Ok(Command::Help(RUN_HELP)));
    }

    #[test]
    fn a_config_path_may_be_any_bytes() {
        use std::os::unix::ffi::OsStringExt as _;
        let path = OsString::from_vec(b"cfg-\xff.json".to_vec());
        assert_eq!(
            parse([OsString::from("--config"), path.clone()]).map_err(|e| e.to_string()),
            Ok(Command::Serve {
                config: path.into(),
                state: StateOptions::default()
            })
        );
    }
}
