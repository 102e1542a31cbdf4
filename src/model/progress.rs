//! What the structured events of an execution add up to (the engine folds events into it; the history keeps
//! it; the front ends show it).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a phase stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Running,
    Completed,
    Failed,
}

/// The current (latest started) phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PhaseProgress {
    /// The event's own 0-based `phase`.
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u32>,
    pub name: String,
    pub state: StepState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A task that has started and not finished.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunningTask {
    pub task_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<u32>,
    /// Agents working on it now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
}

/// Task counters and the running tasks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskProgress {
    pub started: u32,
    pub completed: u32,
    pub failed: u32,
    /// Tasks announced so far: the sum over phases of the latest `total_tasks` of a `task_started` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u32>,
    /// Up to 10 running tasks, oldest first; `running_count` has them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub running: Vec<RunningTask>,
    pub running_count: u32,
}

/// The last message from a task or an agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LastMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    pub text: String,
    pub at: String,
}

/// A state file a workflow reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StateFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<u32>,
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn no_tasks(t: &TaskProgress) -> bool {
    t.started == 0 && t.total.is_none()
}

/// What the structured events of an execution add up to. Texts are shortened to 300 bytes (the whole
/// event stays in the log); what did not happen is left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Progress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PhaseProgress>,
    pub phases_completed: u32,
    #[serde(default, skip_serializing_if = "no_tasks")]
    pub tasks: TaskProgress,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<LastMessage>,
    /// The last 10 state files reported; `state_files_count` counts them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_files: Vec<StateFile>,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub state_files_count: u32,
    /// Well-formed events seen.
    pub events: u64,
    /// `__WF_EVENT__:` lines that did not parse; they stay in the log as plain lines.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub malformed_events: u64,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

pub(crate) const SHOWN_RUNNING: usize = 10;
pub(crate) const SHOWN_STATE_FILES: usize = 10;
/// The longest text (name, description, message, path) a progress snapshot carries.
pub const MAX_TEXT: usize = 300;

/// Shortens `s` to at most [`MAX_TEXT`] bytes at a character boundary, saying so.
pub(crate) fn clip(s: &mut String) {
    if s.len() <= MAX_TEXT {
        return;
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = s.len() - end;
    s.truncate(end);
    s.push_str(&format!("…[+{cut} bytes]"));
}

impl Progress {
    pub(crate) fn clip_texts(&mut self) {
        if let Some(ph) = &mut self.phase {
            clip(&mut ph.name);
            ph.error.iter_mut().for_each(clip);
        }
        for t in &mut self.tasks.running {
            clip(&mut t.task_id);
            clip(&mut t.description);
            t.agents.iter_mut().for_each(clip);
        }
        if let Some(m) = &mut self.message {
            m.task_id.iter_mut().for_each(clip);
            m.agent_name.iter_mut().for_each(clip);
            clip(&mut m.text);
        }
        for f in &mut self.state_files {
            clip(&mut f.path);
            clip(&mut f.description);
        }
    }
}
