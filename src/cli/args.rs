//! Command-line parsing: `workflow-mcp [serve] --config FILE`, `list`, `check`, `run NAME --param k=v`.

use std::ffi::OsString;
use std::path::PathBuf;

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

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut args: Vec<String> = args
        .into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|a| format!("argument {a:?} is not valid UTF-8"))
        })
        .collect::<Result<_, _>>()?;
    let sub = match args.first().map(String::as_str) {
        Some("serve" | "list" | "check" | "run") => Some(args.remove(0)),
        Some("help") => return Ok(Command::Help(USAGE)),
        _ => None,
    };
    let mut config = None;
    let mut json = false;
    let mut params = Vec::new();
    let mut params_json = None;
    let mut positional = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value; see --help"))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                return Ok(Command::Help(match sub.as_deref() {
                    Some("serve") => SERVE_HELP,
                    Some("list") => LIST_HELP,
                    Some("check") => CHECK_HELP,
                    Some("run") => RUN_HELP,
                    _ => USAGE,
                }));
            }
            "-V" | "--version" => return Ok(Command::Version),
            "-c" | "--config" => config = Some(PathBuf::from(value("--config")?)),
            "--json" if sub.as_deref() == Some("list") => json = true,
            "-p" | "--param" if sub.as_deref() == Some("run") => {
                let kv = value("--param")?;
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("--param takes KEY=VALUE, got \"{kv}\""))?;
                params.push((k.to_owned(), v.to_owned()));
            }
            "--params" if sub.as_deref() == Some("run") => params_json = Some(value("--params")?),
            f if f.starts_with('-') && f.len() > 1 => {
                return Err(format!("unknown option \"{f}\"; see --help"));
            }
            _ => positional.push(arg),
        }
    }
    let config = match config.or_else(|| std::env::var_os("WORKFLOW_MCP_CONFIG").map(PathBuf::from)) {
        Some(c) => c,
        None => {
            return Err("no config file: pass --config FILE (or set WORKFLOW_MCP_CONFIG); see --help".into());
        }
    };
    let extra = |positional: &[String]| match positional.first() {
        Some(p) => Err(format!("unexpected argument \"{p}\"; see --help")),
        None => Ok(()),
    };
    match sub.as_deref() {
        None | Some("serve") => {
            extra(&positional)?;
            Ok(Command::Serve { config })
        }
        Some("list") => {
            extra(&positional)?;
            Ok(Command::List { config, json })
        }
        Some("check") => {
            extra(&positional)?;
            Ok(Command::Check { config })
        }
        Some("run") => {
            let mut positional = positional.into_iter();
            let workflow = positional
                .next()
                .ok_or("run needs the workflow's name: workflow-mcp run NAME --config FILE")?;
            extra(&positional.collect::<Vec<_>>())?;
            Ok(Command::Run {
                config,
                workflow,
                params,
                params_json,
            })
        }
        Some(other) => Err(format!("unknown command \"{other}\"; see --help")),
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
    }
}
