//! The `workflow-mcp` binary: parses the command line, sets up tracing on stderr, and runs the command.
//! Errors are printed once, with their chain; anyhow lives only here.

use std::process::ExitCode;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use workflow_mcp::app::{App, HistoryPlace};
use workflow_mcp::catalog::config;
use workflow_mcp::cli::args::{self, Command};
use workflow_mcp::cli::setup;
use workflow_mcp::host::Host;
use workflow_mcp::outlive::{self, SUPERVISE_ARG, Supervisors};
use workflow_mcp::proc::reaper::become_subreaper;
use workflow_mcp::proc::watchdog::{self, WATCHDOG_ARG, Watchdog};
use workflow_mcp::store::{Store, default_state_dir};

fn main() -> ExitCode {
    // The watchdog is this binary run again (see proc::watchdog); it never parses a command line.
    if std::env::args_os().nth(1).is_some_and(|a| a == WATCHDOG_ARG) {
        watchdog::run();
    }
    // So is the supervisor of an execution that outlives its session (see outlive).
    if std::env::args_os().nth(1).is_some_and(|a| a == SUPERVISE_ARG) {
        init_tracing("info");
        return match outlive::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("workflow-mcp supervisor: {:#}", anyhow::Error::new(e));
                ExitCode::from(1)
            }
        };
    }
    let command = match args::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("workflow-mcp: {e}");
            return ExitCode::from(2);
        }
    };
    match run(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("workflow-mcp: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WORKFLOW_MCP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .init();
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Help(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            println!("workflow-mcp {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config, state } => {
            init_tracing("info,rmcp=warn");
            let config = setup::load(config.config.as_deref(), config.project.as_deref())?;
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            let place = HistoryPlace::choose(state.ephemeral, state.state_dir, &config).map_err(anyhow::Error::msg)?;
            // Orphaned descendants of workflows re-parent to us, so they can be reaped and killed.
            if !become_subreaper() {
                tracing::warn!("cannot become a child subreaper; orphaned workflow processes are reaped by init");
            }
            let watchdog = start_watchdog();
            let rt = tokio_runtime()?;
            rt.block_on(async {
                let app = App::build(&config, watchdog, &place)?;
                app.engine.detach_with(supervisors());
                tracing::info!(
                    config = %app.catalog.config().map_or("none".into(), |p| p.display().to_string()),
                    workflows = app.catalog.all().len(),
                    history = %match &place {
                        HistoryPlace::Ephemeral => "in memory only".to_owned(),
                        HistoryPlace::Dir(d) => d.display().to_string(),
                    },
                    "serving MCP on stdio"
                );
                // stdio mode: one host, one session on stdin/stdout, then the host shuts down.
                let host = Host::start(app);
                tokio::spawn(stop_on_signal(host.stop_token()));
                workflow_mcp::mcp::serve(&host, tokio::io::stdin(), tokio::io::stdout()).await;
                host.shutdown().await;
                anyhow::Ok(())
            })?;
            // The stdin reader may still be blocked in read(); do not wait for it.
            std::process::exit(0);
        }
        Command::List { config, json } => {
            init_tracing("warn");
            let config = setup::load(config.config.as_deref(), config.project.as_deref())?;
            Ok(ExitCode::from(workflow_mcp::cli::inspect::list(&config, json)))
        }
        Command::Check { config } => {
            init_tracing("error");
            match setup::load(config.config.as_deref(), config.project.as_deref()) {
                Ok(config) => {
                    setup::say_config(&config);
                    Ok(ExitCode::from(workflow_mcp::cli::inspect::check(&config)))
                }
                Err(e) => {
                    println!("{:#}", anyhow::Error::new(e));
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Run {
            config,
            workflow,
            params,
            params_json,
            state,
        } => {
            init_tracing("warn");
            let config = setup::load(config.config.as_deref(), config.project.as_deref())?;
            if let Some(gate) = config.trust_gate().filter(|g| !g.is_trusted()) {
                eprintln!("workflow-mcp: {}", gate.refusal());
                return Ok(ExitCode::from(1));
            }
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            let place = HistoryPlace::choose(state.ephemeral, state.state_dir, &config).map_err(anyhow::Error::msg)?;
            become_subreaper();
            let watchdog = start_watchdog();
            let rt = tokio_runtime()?;
            let code = rt.block_on(async {
                let app = App::build(&config, watchdog, &place)?;
                app.engine.detach_with(supervisors());
                anyhow::Ok(workflow_mcp::cli::run::run(app, &workflow, &params, params_json.as_deref()).await)
            })?;
            // The runtime may hold a blocked stdin reader; exit without waiting for it.
            std::process::exit(i32::from(code));
        }
        Command::Init { project } => Ok(ExitCode::from(setup::init(project.as_deref()))),
        Command::Trust { file, project } => Ok(ExitCode::from(setup::trust(file.as_deref(), project.as_deref()))),
        Command::History {
            config,
            state_dir,
            workflow,
            state,
            limit,
            running,
            json,
        } => {
            init_tracing("warn");
            let store = open_history(config, state_dir)?;
            Ok(ExitCode::from(if running {
                workflow_mcp::cli::history::running(&store, workflow.as_deref(), limit, json)
            } else {
                workflow_mcp::cli::history::list(&store, workflow.as_deref(), state.as_deref(), limit, json)
            }))
        }
        Command::Status {
            config,
            state_dir,
            id,
            json,
        } => {
            init_tracing("warn");
            let store = open_history(config, state_dir)?;
            Ok(ExitCode::from(workflow_mcp::cli::history::status(&store, &id, json)))
        }
        Command::Logs {
            config,
            state_dir,
            id,
            follow,
        } => {
            init_tracing("warn");
            let store = open_history(config, state_dir)?;
            Ok(ExitCode::from(workflow_mcp::cli::history::logs(&store, &id, follow)))
        }
        Command::Cancel { config, state_dir, id } => {
            init_tracing("warn");
            let config = config.map(|c| config::load(&c)).transpose()?;
            let limits = config.as_ref().map(|c| c.limits.clone()).unwrap_or_default();
            let store = Store::open_reader(&history_dir(config, state_dir)?)?;
            let rt = tokio_runtime()?;
            Ok(ExitCode::from(
                rt.block_on(workflow_mcp::cli::cancel::cancel(store, id, limits)),
            ))
        }
    }
}

/// The history the read-only commands look at: --state-dir, else the config's state_dir, else the default.
fn open_history(config: Option<std::path::PathBuf>, state_dir: Option<std::path::PathBuf>) -> anyhow::Result<Store> {
    // The config is read only when it is what names the state directory.
    let config = match state_dir {
        Some(_) => None,
        None => config.map(|c| config::load(&c)).transpose()?,
    };
    Ok(Store::open_reader(&history_dir(config, state_dir)?)?)
}

/// The state directory of the history commands: --state-dir, else the config's state_dir, else the default.
fn history_dir(
    config: Option<config::Config>,
    state_dir: Option<std::path::PathBuf>,
) -> anyhow::Result<std::path::PathBuf> {
    state_dir
        .or_else(|| config.and_then(|c| c.state_dir))
        .or_else(default_state_dir)
        .ok_or_else(|| anyhow::anyhow!("no state directory: give one with --state-dir DIR"))
}

/// Starts the watchdog (this binary, run again) that kills every workflow if this process dies.
/// Supervisors of executions that outlive their session: this very binary, run again.
fn supervisors() -> std::sync::Arc<Supervisors> {
    std::sync::Arc::new(Supervisors::new(std::path::Path::new("/proc/self/exe")))
}

fn start_watchdog() -> Option<Watchdog> {
    match Watchdog::start(std::path::Path::new("/proc/self/exe")) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the watchdog; workflows may outlive a crash of the server");
            None
        }
    }
}

/// Cancels `stop` on SIGTERM, SIGINT or SIGHUP.
async fn stop_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
    };
    tracing::info!(signal = name, "received a stop signal");
    stop.cancel();
}
