//! The wiring both front ends share: the catalog and the engine (running executions on the local and Slurm
//! runtimes, with the durable history unless ephemeral), built from a loaded config. `serve` and the CLI's `run` use
//! [`App::build`]; `list` and `check` use only [`catalog`] (and `check` the runtimes' own checks); `history`, `status` and `logs` read the store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::discovery::DiscoverySettings;
use crate::catalog::registry::ImportSettings;
use crate::catalog::{Catalog, Config, Limits};
use crate::engine::{Engine, EngineConfig};
use crate::logs::LogLimits;
use crate::proc::{ChildEnv, Watchdog};
use crate::runtime::{LocalRuntime, Runtimes, SlurmRuntime, Spool};
use crate::state_dir::StateDir;
use crate::store::{Role, Store, StoreError, default_state_dir};

/// Where executions and their logs are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryPlace {
    /// In memory only: gone when the server exits.
    Ephemeral,
    /// In this state directory.
    Dir(PathBuf),
}

/// Why no place for the history could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum HistoryPlaceError {
    #[error(
        "no state directory: neither XDG_STATE_HOME nor HOME is set; give one with --state-dir DIR, or run with \
         --ephemeral"
    )]
    NoStateDir,
}

impl HistoryPlace {
    /// `--ephemeral`, else `--state-dir`, else the config's `state_dir`, else the default state directory.
    pub fn choose(
        ephemeral: bool,
        state_dir: Option<PathBuf>,
        config: &Config,
    ) -> Result<HistoryPlace, HistoryPlaceError> {
        if ephemeral {
            return Ok(HistoryPlace::Ephemeral);
        }
        // Absolute from the start: Slurm's commands run from /, and a job's files are named by path.
        state_dir
            .or_else(|| config.state_dir.clone())
            .or_else(default_state_dir)
            .map(|dir| HistoryPlace::Dir(std::path::absolute(&dir).unwrap_or(dir)))
            .ok_or(HistoryPlaceError::NoStateDir)
    }
}

/// Why the app could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the engine")]
    Engine(#[source] std::io::Error),
}

/// What the front ends work on.
pub struct App {
    pub engine: Engine,
    pub catalog: Arc<Catalog>,
    /// A session whose client reads nothing of a pending answer for this long is over (`limits.client_stall_ms`).
    pub client_stall: Duration,
}

/// How the engine behaves under the config file's `limits` (`durable`: with a history).
pub fn engine_config(limits: &Limits, base_env: ChildEnv, durable: bool) -> EngineConfig {
    EngineConfig {
        max_concurrent: limits.max_concurrent,
        max_queued: limits.max_queued,
        default_timeout: limits.default_timeout_ms.map(Duration::from_millis),
        grace: Duration::from_millis(limits.grace_ms),
        log_limits: LogLimits {
            max_bytes: limits.memory_per_execution(durable),
            max_line_bytes: limits.max_line_bytes,
        },
        log_bytes_total: limits.log_bytes_total,
        retain_executions: limits.retain_executions,
        retain_age: Duration::from_secs(limits.retain_seconds),
        retain_log_bytes: limits.log_disk_bytes_total,
        log_disk_bytes: limits.log_disk_bytes_per_execution,
        base_env,
        drain_grace: Duration::from_secs(2),
    }
}

/// Opens the store of a state directory, logging what it had to move aside.
pub fn open_store(place: &HistoryPlace) -> Result<Option<Arc<Store>>, StoreError> {
    match place {
        HistoryPlace::Ephemeral => Ok(None),
        HistoryPlace::Dir(dir) => {
            let (store, warnings) = Store::open(dir)?;
            for w in warnings {
                tracing::warn!("{w}");
            }
            Ok(Some(Arc::new(store)))
        }
    }
}

/// The engine of a command that acts on what other processes run (`cancel`): its store registered as a command
/// (it applies no retention), with no runtime (it starts nothing). Blocking (it opens the store); must run inside
/// a tokio runtime.
pub fn command_engine(dir: &std::path::Path, limits: &Limits) -> Result<Engine, AppError> {
    let (store, warnings) = Store::open_as(dir, Role::Command)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Engine::new(
        engine_config(limits, ChildEnv::inherited(&[]), true),
        tokio::runtime::Handle::current(),
        Arc::new(Runtimes::default()),
        Some(Arc::new(store)),
    )
    .map_err(AppError::Engine)
}

/// The catalog of a loaded config (discovery not run yet).
pub fn catalog(config: &Config) -> Arc<Catalog> {
    let discovery = (!config.discover.is_empty()).then(|| DiscoverySettings {
        dirs: config.discover.clone(),
        cwd: config.dir.clone(),
        env: ChildEnv::inherited(&config.inherit_env).into_vars(),
        timeout: Duration::from_millis(config.limits.discovery_timeout_ms),
        placement: config.default_runtime.clone(),
        outlive_session: config.outlive_session,
    });
    let imports = (!config.import.is_empty()).then(|| ImportSettings {
        dir: config.dir.clone(),
        kinds: config.import.clone(),
        placement: config.default_runtime.clone(),
        outlive_session: config.outlive_session,
    });
    let file = (!config.path.as_os_str().is_empty()).then(|| config.path.clone());
    Arc::new(Catalog::new(config.workflows.clone(), discovery).with_source(file, imports, config.trust_gate()))
}

/// Every runtime, by the placement kind it runs: this machine's, with `local`, and Slurm's, its job folders in
/// `spool` unless a workflow names its own.
fn runtimes(local: LocalRuntime, spool: Spool) -> Runtimes {
    Runtimes::default()
        .with(crate::runtime::local::KIND, local)
        .with(crate::runtime::slurm::KIND, SlurmRuntime::new(spool))
}

/// The runtimes as `check` asks them about a workflow: nothing runs, nothing is followed, no folder is made.
pub fn checking_runtimes() -> Runtimes {
    runtimes(LocalRuntime::default(), Spool::Temporary)
}

/// Where Slurm job folders go unless a workflow names its own `spool_dir`: `slurm/` in the state directory, or
/// a private temporary folder (made like `mkdtemp`, removed at exit) when ephemeral.
fn slurm_spool(history: &HistoryPlace) -> Spool {
    match history {
        HistoryPlace::Dir(dir) => Spool::Dir(StateDir::new(dir).slurm_spool()),
        HistoryPlace::Ephemeral => Spool::Temporary,
    }
}

impl App {
    /// The catalog and the engine for a loaded config, with the first discovery scan started in the background.
    /// `watchdog`, when given, kills every workflow if this process dies; `history` says where executions are
    /// kept (a state directory that cannot be used is an error naming it). Executions whose server is gone are
    /// marked lost. Must run inside a tokio runtime.
    pub fn build(config: &Config, watchdog: Option<Watchdog>, history: &HistoryPlace) -> Result<Arc<App>, AppError> {
        let store = open_store(history)?;
        let engine = Engine::new(
            engine_config(
                &config.limits,
                ChildEnv::inherited(&config.inherit_env),
                store.is_some(),
            ),
            tokio::runtime::Handle::current(),
            Arc::new(runtimes(LocalRuntime::new(watchdog), slurm_spool(history))),
            store,
        )
        .map_err(AppError::Engine)?;
        // Remote jobs that outlived their server are followed again (their workflows are in the manifest).
        let manifest = config.workflows.clone();
        let (_followed, lost) = engine.recover(|name| manifest.iter().find(|w| w.name == name).cloned());
        // One line each for a few; a crashed server's whole queue gets one line (each id at debug level).
        for id in &lost {
            if lost.len() <= 10 {
                tracing::warn!(execution = %id, "an execution whose server ended while it ran is now lost");
            } else {
                tracing::debug!(execution = %id, "an execution whose server ended is now lost");
            }
        }
        if lost.len() > 10 {
            tracing::warn!(executions = lost.len(), "executions whose server ended are now lost");
        }
        let catalog = catalog(config);
        catalog.start_initial_scan();
        Ok(Arc::new(App {
            engine,
            catalog,
            client_stall: Duration::from_millis(config.limits.client_stall_ms),
        }))
    }
}
