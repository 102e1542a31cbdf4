//! The `workflow-mcp` binary: parses the command line, sets up tracing on stderr, and runs the command.
//! Errors are printed once, with their chain; anyhow lives only here.

use std::process::ExitCode;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use workflow_mcp::app::App;
use workflow_mcp::catalog::config;
use workflow_mcp::cli::args::{self, Command};
use workflow_mcp::proc::reaper::become_subreaper;
use workflow_mcp::proc::watchdog::{self, WATCHDOG_ARG, Watchdog};

fn main() -> ExitCode {
    // The watchdog is this binary run again (see proc::watchdog); it never parses a command line.
    if std::env::args_os().nth(1).is_some_and(|a| a == WATCHDOG_ARG) {
        watchdog::run();
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
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
        Command::Serve { config } => {
            init_tracing("info,rmcp=warn");
            let config = config::load(&config)?;
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            // Orphaned descendants of workflows re-parent to us, so they can be reaped and killed.
            if !become_subreaper() {
                tracing::warn!("cannot become a child subreaper; orphaned workflow processes are reaped by init");
            }
            let watchdog = start_watchdog();
            let rt = runtime()?;
            rt.block_on(async {
                let app = App::build(&config, watchdog).context("cannot start the engine")?;
                tracing::info!(
                    config = %config.path.display(),
                    workflows = app.catalog.all().len(),
                    "serving MCP on stdio"
                );
                let stop = CancellationToken::new();
                tokio::spawn(stop_on_signal(stop.clone()));
                workflow_mcp::mcp::serve(app, tokio::io::stdin(), tokio::io::stdout(), stop).await;
                anyhow::Ok(())
            })?;
            // The stdin reader may still be blocked in read(); do not wait for it.
            std::process::exit(0);
        }
        Command::List { config, json } => {
            init_tracing("warn");
            let config = config::load(&config)?;
            Ok(ExitCode::from(workflow_mcp::cli::inspect::list(&config, json)))
        }
        Command::Check { config } => {
            init_tracing("error");
            match config::load(&config) {
                Ok(config) => Ok(ExitCode::from(workflow_mcp::cli::inspect::check(&config))),
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
        } => {
            init_tracing("warn");
            let config = config::load(&config)?;
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            become_subreaper();
            let watchdog = start_watchdog();
            let rt = runtime()?;
            let code = rt.block_on(async {
                let app = App::build(&config, watchdog).context("cannot start the engine")?;
                anyhow::Ok(workflow_mcp::cli::run::run(app, &workflow, &params, params_json.as_deref()).await)
            })?;
            // The runtime may hold a blocked stdin reader; exit without waiting for it.
            std::process::exit(i32::from(code));
        }
    }
}

/// Starts the watchdog (this binary, run again) that kills every workflow if this process dies.
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
