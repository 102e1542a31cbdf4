//! Structured events (`__WF_EVENT__:{json}` lines on stderr) and the progress they add up to in a status.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The prefix that marks a structured-event line on stderr.
pub const EVENT_PREFIX: &[u8] = b"__WF_EVENT__:";

/// One structured event, tagged by `type` (the workflow-manager protocol). Unknown extra fields are ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkflowEvent {
    PhaseStarted {
        phase: u32,
        #[serde(default)]
        name: String,
        #[serde(default)]
        total_phases: Option<u32>,
    },
    PhaseCompleted {
        phase: u32,
        #[serde(default)]
        name: String,
    },
    PhaseFailed {
        phase: u32,
        #[serde(default)]
        name: String,
        #[serde(default)]
        error: String,
    },
    TaskStarted {
        #[serde(default)]
        phase: Option<u32>,
        task_id: String,
        #[serde(default)]
        description: String,
        #[serde(default)]
        total_tasks: Option<u32>,
    },
    TaskProgress {
        task_id: String,
        #[serde(default)]
        message: String,
    },
    TaskCompleted {
        task_id: String,
        #[serde(default)]
        result: Option<String>,
    },
    TaskFailed {
        task_id: String,
        #[serde(default)]
        error: String,
    },
    AgentStarted {
        task_id: String,
        agent_name: String,
        #[serde(default)]
        description: String,
    },
    AgentMessage {
        task_id: String,
        agent_name: String,
        #[serde(default)]
        message: String,
    },
    AgentCompleted {
        task_id: String,
        agent_name: String,
        #[serde(default)]
        result: Option<String>,
    },
    AgentFailed {
        task_id: String,
        agent_name: String,
        #[serde(default)]
        error: String,
    },
    StateFileCreated {
        #[serde(default)]
        phase: Option<u32>,
        file_path: String,
        #[serde(default)]
        description: String,
    },
    RawOutput {
        #[serde(default)]
        stream: String,
        #[serde(default)]
        line: String,
    },
}

/// Parses the text after [`EVENT_PREFIX`]; `None` for a malformed event.
pub fn parse_event(json: &[u8]) -> Option<WorkflowEvent> {
    serde_json::from_slice(json).ok()
}

pub use crate::model::progress::{
    LastMessage, MAX_TEXT, PhaseProgress, Progress, RunningTask, StateFile, StepState, TaskProgress,
};
use crate::model::progress::{SHOWN_RUNNING, SHOWN_STATE_FILES};

/// Folds events into a [`Progress`]; shared by the stderr drain thread (writer) and status readers.
#[derive(Debug, Default)]
pub struct ProgressTracker {
    inner: Mutex<TrackerState>,
}

#[derive(Debug, Default)]
struct TrackerState {
    progress: Progress,
    /// Running tasks by id, in start order.
    running: BTreeMap<u64, RunningTask>,
    order: BTreeMap<String, u64>,
    next: u64,
    /// `total_tasks` announced per phase.
    totals: BTreeMap<Option<u32>, u32>,
}

impl ProgressTracker {
    /// The progress so far, or `None` if the execution never sent an event.
    pub fn snapshot(&self) -> Option<Progress> {
        let st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if st.progress.events == 0 && st.progress.malformed_events == 0 {
            return None;
        }
        let mut p = st.progress.clone();
        p.tasks.running = st.running.values().take(SHOWN_RUNNING).cloned().collect();
        p.tasks.running_count = st.running.len() as u32;
        p.clip_texts();
        Some(p)
    }

    pub fn record_malformed(&self, n: u64) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .progress
            .malformed_events += n;
    }

    pub fn apply(&self, event: WorkflowEvent, at: SystemTime) {
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        st.apply(event, at);
    }
}

impl TrackerState {
    fn message(&mut self, task_id: Option<String>, agent_name: Option<String>, text: String, at: SystemTime) {
        self.progress.message = Some(LastMessage {
            task_id,
            agent_name,
            text,
            at: crate::clock::rfc3339(at),
        });
    }

    fn finish_task(&mut self, task_id: &str) -> bool {
        match self.order.remove(task_id) {
            Some(k) => {
                self.running.remove(&k);
                true
            }
            None => false,
        }
    }

    fn apply(&mut self, event: WorkflowEvent, at: SystemTime) {
        self.progress.events += 1;
        match event {
            WorkflowEvent::PhaseStarted {
                phase,
                name,
                total_phases,
            } => {
                let total = total_phases.or(self.progress.phase.as_ref().and_then(|p| p.total));
                self.progress.phase = Some(PhaseProgress {
                    index: phase,
                    total,
                    name,
                    state: StepState::Running,
                    error: None,
                });
            }
            WorkflowEvent::PhaseCompleted { phase, name } => {
                self.progress.phases_completed += 1;
                self.set_phase_state(phase, name, StepState::Completed, None);
            }
            WorkflowEvent::PhaseFailed { phase, name, error } => {
                self.set_phase_state(phase, name, StepState::Failed, Some(error));
            }
            WorkflowEvent::TaskStarted {
                phase,
                task_id,
                description,
                total_tasks,
            } => {
                self.progress.tasks.started += 1;
                if let Some(t) = total_tasks {
                    self.totals.insert(phase, t);
                    self.progress.tasks.total = Some(self.totals.values().sum());
                }
                self.finish_task(&task_id);
                let k = self.next;
                self.next += 1;
                self.order.insert(task_id.clone(), k);
                self.running.insert(
                    k,
                    RunningTask {
                        task_id,
                        description,
                        phase,
                        agents: Vec::new(),
                    },
                );
            }
            WorkflowEvent::TaskProgress { task_id, message } => self.message(Some(task_id), None, message, at),
            WorkflowEvent::TaskCompleted { task_id, result } => {
                self.progress.tasks.completed += 1;
                self.finish_task(&task_id);
                if let Some(r) = result {
                    self.message(Some(task_id), None, r, at);
                }
            }
            WorkflowEvent::TaskFailed { task_id, error } => {
                self.progress.tasks.failed += 1;
                self.finish_task(&task_id);
                self.message(Some(task_id), None, format!("failed: {error}"), at);
            }
            WorkflowEvent::AgentStarted {
                task_id,
                agent_name,
                description,
            } => {
                if let Some(task) = self.order.get(&task_id).and_then(|k| self.running.get_mut(k))
                    && !task.agents.contains(&agent_name)
                {
                    task.agents.push(agent_name.clone());
                }
                if !description.is_empty() {
                    self.message(Some(task_id), Some(agent_name), description, at);
                }
            }
            WorkflowEvent::AgentMessage {
                task_id,
                agent_name,
                message,
            } => self.message(Some(task_id), Some(agent_name), message, at),
            WorkflowEvent::AgentCompleted {
                task_id,
                agent_name,
                result,
            } => {
                self.remove_agent(&task_id, &agent_name);
                if let Some(r) = result {
                    self.message(Some(task_id), Some(agent_name), r, at);
                }
            }
            WorkflowEvent::AgentFailed {
                task_id,
                agent_name,
                error,
            } => {
                self.remove_agent(&task_id, &agent_name);
                self.message(Some(task_id), Some(agent_name), format!("failed: {error}"), at);
            }
            WorkflowEvent::StateFileCreated {
                phase,
                file_path,
                description,
            } => {
                self.progress.state_files_count += 1;
                if self.progress.state_files.len() == SHOWN_STATE_FILES {
                    self.progress.state_files.remove(0);
                }
                self.progress.state_files.push(StateFile {
                    phase,
                    path: file_path,
                    description,
                });
            }
            WorkflowEvent::RawOutput { .. } => {}
        }
    }

    fn set_phase_state(&mut self, phase: u32, name: String, state: StepState, error: Option<String>) {
        let total = self.progress.phase.as_ref().and_then(|p| p.total);
        let name = if name.is_empty() {
            self.progress
                .phase
                .as_ref()
                .filter(|p| p.index == phase)
                .map(|p| p.name.clone())
                .unwrap_or_default()
        } else {
            name
        };
        self.progress.phase = Some(PhaseProgress {
            index: phase,
            total,
            name,
            state,
            error,
        });
    }

    fn remove_agent(&mut self, task_id: &str, agent: &str) {
        if let Some(task) = self.order.get(task_id).and_then(|k| self.running.get_mut(k)) {
            task.agents.retain(|a| a != agent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(tracker: &ProgressTracker, lines: &[&str]) {
        for l in lines {
            match parse_event(l.as_bytes()) {
                Some(e) => tracker.apply(e, SystemTime::now()),
                None => tracker.record_malformed(1),
            }
        }
    }

    #[test]
    fn a_full_event_sequence_adds_up() {
        let t = ProgressTracker::default();
        assert_eq!(t.snapshot(), None);
        feed(
            &t,
            &[
                r#"{"type":"phase_started","phase":0,"name":"Analyze","total_phases":3}"#,
                r#"{"type":"task_started","phase":0,"task_id":"t1","description":"Parsing input","total_tasks":2}"#,
                r#"{"type":"task_started","phase":0,"task_id":"t2","description":"Scanning"}"#,
                r#"{"type":"agent_started","task_id":"t1","agent_name":"parser","description":"reading"}"#,
                r#"{"type":"agent_message","task_id":"t1","agent_name":"parser","message":"Found 42 items"}"#,
                r#"{"type":"task_completed","task_id":"t1","result":"ok"}"#,
                r#"{"type":"task_failed","task_id":"t2","error":"boom"}"#,
                r#"{"type":"state_file_created","phase":0,"file_path":"out/a.yaml","description":"analysis"}"#,
                r#"{"type":"phase_completed","phase":0,"name":"Analyze"}"#,
                r#"{"type":"phase_started","phase":1,"name":"Build","total_phases":3}"#,
                r#"{"type":"task_started","phase":1,"task_id":"t3","description":"Compiling"}"#,
                r#"{"type":"agent_message","task_id":"t3","agent_name":"cc","message":"50%"}"#,
                r#"{"type":"nonsense"}"#,
                r#"not json"#,
            ],
        );
        let p = t.snapshot().unwrap();
        assert_eq!(
            p.phase,
            Some(PhaseProgress {
                index: 1,
                total: Some(3),
                name: "Build".into(),
                state: StepState::Running,
                error: None
            })
        );
        assert_eq!(p.phases_completed, 1);
        assert_eq!((p.tasks.started, p.tasks.completed, p.tasks.failed), (3, 1, 1));
        assert_eq!(p.tasks.total, Some(2));
        assert_eq!(p.tasks.running_count, 1);
        assert_eq!(p.tasks.running[0].task_id, "t3");
        assert_eq!(p.message.as_ref().unwrap().text, "50%");
        assert_eq!(p.message.as_ref().unwrap().agent_name.as_deref(), Some("cc"));
        assert_eq!(p.state_files[0].path, "out/a.yaml");
        assert_eq!(p.events, 12);
        assert_eq!(p.malformed_events, 2);
    }
}
