//! The wiring both front ends share: the catalog and the engine (running executions on the local runtime),
//! built from a loaded config. `serve` and the CLI's `run` use [`App::build`]; `list` and `check` use only
//! [`catalog`].

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::discovery::DiscoverySettings;
use crate::catalog::{Catalog, Config, Limits};
use crate::engine::{Engine, EngineConfig};
use crate::logs::LogLimits;
use crate::proc::{ChildEnv, Watchdog};
use crate::runtime::LocalRuntime;

/// What the front ends work on.
pub struct App {
    pub engine: Engine,
    pub catalog: Arc<Catalog>,
}

/// How the engine behaves under the config file's `limits`.
pub fn engine_config(limits: &Limits, base_env: ChildEnv) -> EngineConfig {
    EngineConfig {
        max_concurrent: limits.max_concurrent,
        default_timeout: limits.default_timeout_ms.map(Duration::from_millis),
        grace: Duration::from_millis(limits.grace_ms),
        log_limits: LogLimits {
            max_bytes: limits.log_bytes_per_execution,
            max_line_bytes: limits.max_line_bytes,
        },
        log_bytes_total: limits.log_bytes_total,
        retain_executions: limits.retain_executions,
        retain_age: Duration::from_secs(limits.retain_seconds),
        base_env,
        drain_grace: Duration::from_secs(2),
    }
}

/// The catalog of a loaded config (discovery not run yet).
pub fn catalog(config: &Config) -> Arc<Catalog> {
    let discovery = (!config.discover.is_empty()).then(|| DiscoverySettings {
        dirs: config.discover.clone(),
        cwd: config.dir.clone(),
        env: ChildEnv::inherited(&config.inherit_env).into_vars(),
        timeout: Duration::from_millis(config.limits.discovery_timeout_ms),
    });
    Arc::new(Catalog::new(config.workflows.clone(), discovery))
}

impl App {
    /// The catalog and the engine for a loaded config, with the first discovery scan started in the background.
    /// `watchdog`, when given, kills every workflow if this process dies. Must run inside a tokio runtime.
    pub fn build(config: &Config, watchdog: Option<Watchdog>) -> std::io::Result<Arc<App>> {
        let engine = Engine::new(
            engine_config(&config.limits, ChildEnv::inherited(&config.inherit_env)),
            tokio::runtime::Handle::current(),
            Arc::new(LocalRuntime::new(watchdog)),
        )?;
        let catalog = catalog(config);
        catalog.start_initial_scan();
        Ok(Arc::new(App { engine, catalog }))
    }
}
