//! Building the catalog and the engine from a config file, shared by `serve` and the CLI commands.

use std::sync::Arc;

use crate::catalog::{Catalog, Config};
use crate::engine::{Engine, EngineConfig, Watchdog};
use crate::mcp::App;

/// The catalog and engine for a loaded config. Must run inside a tokio runtime.
pub fn build_app(config: &Config, watchdog: Option<Watchdog>) -> std::io::Result<Arc<App>> {
    let engine = Engine::new(
        EngineConfig::from_limits(&config.limits, &config.inherit_env),
        tokio::runtime::Handle::current(),
        watchdog,
    )?;
    let catalog = Arc::new(Catalog::new(config.workflows.clone()));
    Ok(Arc::new(App {
        engine,
        catalog,
        refresh: None,
    }))
}
