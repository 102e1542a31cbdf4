//! Executions that outlive their session on this machine: each is handed to a supervisor process of its own
//! (this binary run again, in its own session), which runs it with an engine of its own on the same state
//! directory and exits once it is final. Servers never hold it: for them it is another instance's execution,
//! read from the history and followed through its files, like one a sibling server runs. What the supervisor is
//! told travels as a [`Handover`]; how it is started is the [`Detacher`] the app gives the engine.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::config::EngineConfig;
use super::execution::Execution;

/// Everything a supervisor needs to run one execution already recorded (queued) by the server that hands it over.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    /// The state directory whose history holds the record.
    pub state_dir: PathBuf,
    pub id: Uuid,
    /// The instance that recorded it: the supervisor takes it over from exactly that owner.
    pub recorded_by: String,
    pub workflow: String,
    pub params: Map<String, Value>,
    pub idempotency_key: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub argv: Vec<String>,
    pub env: crate::proc::ChildEnv,
    pub cwd: PathBuf,
    pub timeout: Option<Duration>,
    /// How the server's engine behaves (grace, log limits, retention), so the supervisor's behaves the same.
    pub config: EngineConfig,
}

impl Handover {
    pub(super) fn of(exec: &Execution, state_dir: PathBuf, recorded_by: String, config: &EngineConfig) -> Handover {
        Handover {
            state_dir,
            id: exec.id,
            recorded_by,
            workflow: exec.workflow.name.clone(),
            params: exec.params.clone(),
            idempotency_key: exec.idempotency_key.clone(),
            created_at: crate::clock::unix_ms(exec.created_at),
            argv: exec.launch.argv.clone(),
            env: exec.launch.env.clone(),
            cwd: exec.launch.cwd.clone(),
            timeout: exec.launch.timeout,
            config: config.clone(),
        }
    }
}

/// Why an execution could not be handed to a supervisor.
#[derive(Debug, thiserror::Error)]
pub enum DetachError {
    #[error("its supervisor process could not start: {0}")]
    CannotStart(#[source] std::io::Error),
    #[error("its supervisor process ended before it started the workflow{}", said(.0))]
    SupervisorFailed(String),
}

fn said(why: &str) -> String {
    if why.is_empty() {
        String::new()
    } else {
        format!(": {why}")
    }
}

/// Starts the supervisor of an execution that outlives its session, and returns once the supervisor has started
/// the workflow (or recorded why it could not). Blocking.
pub trait Detacher: Send + Sync {
    fn detach(&self, handover: &Handover) -> Result<(), DetachError>;
}
