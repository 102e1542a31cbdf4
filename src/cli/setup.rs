//! Building the catalog and the engine from a config file, shared by `serve` and the CLI commands.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::discovery::DiscoverySettings;
use crate::catalog::{Catalog, Config};
use crate::engine::spawn::base_env;
use crate::engine::{Engine, EngineConfig, Watchdog};
use crate::mcp::App;

/// The catalog of a loaded config (discovery not run yet).
pub fn catalog(config: &Config) -> Arc<Catalog> {
    let discovery = (!config.discover.is_empty()).then(|| DiscoverySettings {
        dirs: config.discover.clone(),
        cwd: config.dir.clone(),
        env: base_env(&config.inherit_env),
        timeout: Duration::from_millis(config.limits.discovery_timeout_ms),
    });
    Arc::new(Catalog::new(config.workflows.clone(), discovery))
}

/// The catalog and engine for a loaded config, with the first discovery scan started in the background. Must
/// run inside a tokio runtime.
pub fn build_app(config: &Config, watchdog: Option<Watchdog>) -> std::io::Result<Arc<App>> {
    let engine = Engine::new(
        EngineConfig::from_limits(&config.limits, &config.inherit_env),
        tokio::runtime::Handle::current(),
        watchdog,
    )?;
    let catalog = catalog(config);
    catalog.start_initial_scan();
    Ok(Arc::new(App { engine, catalog }))
}
