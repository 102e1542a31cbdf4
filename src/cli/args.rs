//! Command-line parsing: `workflow-mcp [serve] --config FILE`, `list`, `check`, `run NAME --param k=v`,
//! `help [COMMAND]`. Options are read by `lexopt`; `--` ends them, so what follows is positional.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use lexopt::prelude::*;

pub const USAGE: &str = "\
workflow-mcp: an MCP server over stdio that runs workflows and lets an agent follow their status and logs

Usage:
  workflow-mcp [serve] --config FILE     serve MCP over stdin/stdout (the default command)
  workflow-mcp list    --config FILE     show the workflows and their params
  workflow-mcp check   --config FILE     check the config and discovery; exit 1 if anything is wrong
  workflow-mcp run NAME --config FILE [--param KEY=VALUE]...
                                         run a workflow here, streaming its output; exits with its exit code

Options:
  -c, --config FILE   the config file (default: $WORKFLOW_MCP_CONFIG)
  -h, --help          show help (also: workflow-mcp COMMAND --help)
  -V, --version       show the version

Diagnostics go to stderr; set WORKFLOW_MCP_LOG (e.g. debug, warn) to change how much.
";

const SERVE_HELP: &str = "\
workflow-mcp serve --config FILE

Serves MCP (JSON-RPC, one message per line) on stdin/stdout. stdout carries protocol messages only; diagnostics
go to stderr. End of input means no more requests: every request already received is answered, then every
running workflow is stopped and the server exits. SIGTERM/SIGINT answer pending calls at once, stop every
workflow and exit. `serve` may be left out: `workflow-mcp --config FILE` does the same.
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
workflow-mcp run NAME --config FILE [--param KEY=VALUE]... [--params JSON]

Runs workflow NAME here, on the same engine the server uses, streaming its output: stdout lines as they are,
stderr lines marked with '!' when stdout is not a terminal (in colour when it is). Structured events update
a progress line on a terminal. Exits with the workflow's exit code (128+N when killed by signal N, 124 on
timeout); Ctrl-C stops the workflow (SIGTERM, then SIGKILL) and exits 130.

  -p, --param KEY=VALUE   a param value (numbers and booleans are converted by the param's type)
      --params JSON       param values as one JSON object
";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Serve {
        config: PathBuf,
    },
    List {
        config: PathBuf,
        json: bool,
    },
    Check {
        config: PathBuf,
    },
    Run {
        config: PathBuf,
        workflow: String,
        params: Vec<(String, String)>,
        params_json: Option<String>,
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
}

impl Named {
    fn from_name(name: &OsStr) -> Option<Named> {
        match name.to_str()? {
            "serve" => Some(Named::Serve),
            "list" => Some(Named::List),
            "check" => Some(Named::Check),
            "run" => Some(Named::Run),
            _ => None,
        }
    }

    fn help(self) -> &'static str {
        match self {
            Named::Serve => SERVE_HELP,
            Named::List => LIST_HELP,
            Named::Check => CHECK_HELP,
            Named::Run => RUN_HELP,
        }
    }
}

/// Parses the arguments after the program name. The error is a usage message (exit 2).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    // The command, when there is one, is the first argument; without one the command is `serve`.
    let named = match args.peek() {
        Some(first) if first == "help" => {
            args.next();
            return help(lexopt::Parser::from_args(args)).map_err(usage_message);
        }
        Some(first) if !first.as_encoded_bytes().starts_with(b"-") => {
            let named = Named::from_name(first).ok_or_else(|| unknown_command(first))?;
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
            None => Err(unknown_command(&name).into()),
        },
    }
}

/// The options and positional arguments of a command (`None`: none named, so `serve`).
fn command(named: Option<Named>, mut parser: lexopt::Parser) -> Result<Command, lexopt::Error> {
    let mut config = None;
    let mut json = false;
    let mut params = Vec::new();
    let mut params_json = None;
    let mut positional = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(named.map_or(USAGE, Named::help))),
            Short('V') | Long("version") => return Ok(Command::Version),
            Short('c') | Long("config") => config = Some(PathBuf::from(parser.value()?)),
            Long("json") if named == Some(Named::List) => json = true,
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
    let config = config
        .or_else(|| std::env::var_os("WORKFLOW_MCP_CONFIG").map(PathBuf::from))
        .ok_or("no config file: pass --config FILE (or set WORKFLOW_MCP_CONFIG); see --help")?;
    let mut positional = positional.into_iter();
    let command = match named.unwrap_or(Named::Serve) {
        Named::Serve => Command::Serve { config },
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
        },
    };
    match positional.next() {
        Some(extra) => Err(lexopt::Error::UnexpectedArgument(extra)),
        None => Ok(command),
    }
}

fn unknown_command(name: &OsStr) -> String {
    format!(
        "unknown command \"{}\"; the commands are serve, list, check, run and help",
        name.to_string_lossy()
    )
}

/// Words a parsing error the way this program's other usage errors read.
fn usage_message(e: lexopt::Error) -> String {
    match e {
        lexopt::Error::MissingValue { option: Some(option) } => format!("{option} needs a value; see --help"),
        lexopt::Error::UnexpectedOption(option) => format!("unknown option \"{option}\"; see --help"),
        lexopt::Error::UnexpectedArgument(value) => {
            format!("unexpected argument \"{}\"; see --help", value.to_string_lossy())
        }
        lexopt::Error::UnexpectedValue { option, value } => format!(
            "{option} takes no value, got \"{}\"; give {option} alone",
            value.to_string_lossy()
        ),
        lexopt::Error::NonUnicodeValue(value) => format!("argument {value:?} is not valid UTF-8"),
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            p(&["--config", "a.json"]),
            Ok(Command::Serve {
                config: "a.json".into()
            })
        );
        assert_eq!(
            p(&["serve", "-c", "a.json"]),
            Ok(Command::Serve {
                config: "a.json".into()
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
                params_json: None
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
                params_json: None
            })
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
            parse([OsString::from("--config"), path.clone()]),
            Ok(Command::Serve { config: path.into() })
        );
    }
}
