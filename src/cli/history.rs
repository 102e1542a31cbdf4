//! `workflow-mcp history [--running]`, `status ID` and `logs ID [--follow]`: the history as a person — or an agent
//! with a shell — reads it, straight from the state directory (no server needed; several may be writing to it).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use uuid::Uuid;

use super::terminal::for_output;
use crate::engine::{ExecutionState, ExecutionView, Follow, Reread, StoredExecution};
use crate::format::summary::exit_code;
use crate::format::{ProgressLine, Summary};
use crate::logs::segment::Stream;
use crate::logs::{LogDir, LogQuery};
use crate::store::{ExecutionRecord, ReadError, Role, Store};

/// The record, with an unfinished one whose server is gone shown as lost (nothing is written).
fn as_known(store: &Store, mut rec: ExecutionRecord) -> ExecutionRecord {
    if rec.unfinished() && store.owner_gone(&rec.owner) {
        rec.state = ExecutionState::Lost;
        rec.error = Some(format!(
            "the {} that ran it (instance {}) is gone",
            store.owner_role(&rec.owner).as_str(),
            rec.owner
        ));
    }
    rec
}

fn view(store: &Store, rec: ExecutionRecord) -> ExecutionView {
    ExecutionView::Stored(Arc::new(StoredExecution {
        logs: LogDir::open(&store.log_path(&rec.id)),
        record: as_known(store, rec),
    }))
}

/// The process that owns an unfinished execution, as `history --running` names it.
#[derive(serde::Serialize)]
struct Owner {
    /// None once its instance is no longer registered.
    role: Option<Role>,
    pid: Option<u32>,
    instance: String,
    alive: bool,
}

impl Owner {
    fn of(store: &Store, rec: &ExecutionRecord, alive: bool) -> Owner {
        let registered = store.instance_record(&rec.owner);
        Owner {
            role: registered.as_ref().map(|i| i.role),
            pid: registered.as_ref().map(|i| i.pid),
            instance: rec.owner.clone(),
            alive,
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match (self.role, self.pid) {
            (Some(role), Some(pid)) => format!("{} pid {pid}", role.as_str()),
            _ => format!("instance {}", self.instance),
        };
        match (self.alive, self.role) {
            (true, Some(Role::Supervisor)) => write!(f, "detached ({what})"),
            (true, _) => f.write_str(&what),
            (false, _) => write!(f, "gone (was {what})"),
        }
    }
}

/// Why an id names no execution a command can show.
#[derive(Debug, thiserror::Error)]
pub(super) enum FindError {
    #[error("no execution {id} in {}", .dir.display())]
    Unknown { id: String, dir: PathBuf },
    #[error("no execution {id} in {}; `workflow-mcp history` lists them", .dir.display())]
    NoMatch { id: String, dir: PathBuf },
    #[error("\"{id}\" names more than one execution; give more of the id")]
    Ambiguous { id: String },
    // The whole chain in one sentence, as the other front ends say it (so no `#[source]` to repeat).
    #[error("{}", crate::store::error_chain(.0))]
    Read(ReadError),
}

/// The execution an id (or a unique prefix of one) names.
pub(super) fn find(store: &Store, id: &str) -> Result<ExecutionView, FindError> {
    let ids = match Uuid::parse_str(id) {
        Ok(full) => vec![full],
        Err(_) if id.len() >= 4 => store.ids_with_prefix(id, 2).map_err(FindError::Read)?,
        Err(_) => Vec::new(),
    };
    let id = id.to_owned();
    match ids.as_slice() {
        [one] => match store.try_get(one) {
            Ok(Some(rec)) => Ok(view(store, rec)),
            Ok(None) => Err(FindError::Unknown {
                id,
                dir: store.root().to_owned(),
            }),
            Err(e) => Err(FindError::Read(e)),
        },
        [] => Err(FindError::NoMatch {
            id,
            dir: store.root().to_owned(),
        }),
        _ => Err(FindError::Ambiguous { id }),
    }
}

/// `history`: returns the exit code.
pub fn list(store: &Store, workflow: Option<&str>, state: Option<&str>, limit: usize, json: bool) -> u8 {
    if let Some(s) = state
        && ExecutionState::parse(s).is_none()
    {
        let known: Vec<&str> = ExecutionState::ALL.iter().map(|s| s.as_str()).collect();
        eprintln!(
            "workflow-mcp: unknown state \"{s}\"; the states are {}",
            known.join(", ")
        );
        return 2;
    }
    let (records, total) = match store.list(workflow, state, limit) {
        Ok(listed) => listed,
        Err(e) => {
            eprintln!("workflow-mcp: {}", crate::store::error_chain(&e));
            return 1;
        }
    };
    let statuses: Vec<_> = records.into_iter().map(|r| view(store, r).status()).collect();
    if json {
        let out = serde_json::json!({"executions": statuses, "total": total});
        println!("{}", serde_json::to_string_pretty(&out).expect("statuses are JSON"));
        return 0;
    }
    println!(
        "{} of {} execution(s) in {}, newest first",
        statuses.len(),
        total,
        store.root().display()
    );
    for s in &statuses {
        println!("{}", row(s));
    }
    0
}

/// One execution in a listing: id, workflow, state, how it ended, duration, start time.
fn row(s: &crate::engine::ExecutionStatus) -> String {
    format!(
        "{}  {:<20} {:<15}{}  {}",
        s.execution_id,
        s.workflow,
        s.state.as_str(),
        Summary(s).row_ending(),
        s.started_at.as_deref().unwrap_or(&s.created_at)
    )
}

/// `history --running`: the unfinished executions, each with the process that owns it (one whose owner is gone
/// shown lost); returns the exit code.
pub fn running(store: &Store, workflow: Option<&str>, limit: usize, json: bool) -> u8 {
    let (records, total) = match store.list_unfinished(workflow, limit) {
        Ok(listed) => listed,
        Err(e) => {
            eprintln!("workflow-mcp: {}", crate::store::error_chain(&e));
            return 1;
        }
    };
    let listed: Vec<_> = records
        .into_iter()
        .map(|r| {
            let status = view(store, r.clone()).status();
            let owner = Owner::of(store, &r, status.state == r.state);
            (status, owner)
        })
        .collect();
    if json {
        let executions: Vec<serde_json::Value> = listed
            .iter()
            .map(|(status, owner)| {
                let mut value = serde_json::to_value(status).expect("a status is JSON");
                value["owner"] = serde_json::to_value(owner).expect("an owner is JSON");
                value
            })
            .collect();
        let out = serde_json::json!({"executions": executions, "total": total});
        println!("{}", serde_json::to_string_pretty(&out).expect("statuses are JSON"));
        return 0;
    }
    println!(
        "{} of {} unfinished execution(s) in {}, newest first",
        listed.len(),
        total,
        store.root().display()
    );
    for (status, owner) in &listed {
        println!("{}  {owner}", row(status));
    }
    0
}

/// `status ID`: returns the exit code (1 when there is no such execution).
pub fn status(store: &Store, id: &str, json: bool) -> u8 {
    let view = match find(store, id) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("workflow-mcp: {e}");
            return 1;
        }
    };
    let mut s = view.status();
    s.evidence = view.evidence();
    if json {
        println!("{}", serde_json::to_string_pretty(&s).expect("a status is JSON"));
        return 0;
    }
    let summary = Summary(&s);
    let head = summary.headline();
    // Errors, progress and evidence quote the workflow's own text.
    let terminal = std::io::stdout().is_terminal();
    let show = |line: &str| println!("{}", for_output(line, terminal));
    show(&head);
    if let Some(e) = &s.error {
        show(&format!("error: {e}"));
    }
    if let Some(p) = &s.progress {
        show(&format!("progress: {}", ProgressLine(p)));
    }
    show(&format!("output: {}", summary.output_counts()));
    if !s.params.is_empty() {
        show(&format!("params: {}", serde_json::Value::Object(s.params.clone())));
    }
    if let Some(e) = &s.evidence {
        show(&format!("evidence ({}):", e.about));
        for line in e.lines.lines() {
            show(line);
        }
    }
    0
}

/// The history as these commands read it, for [`Follow`]: nothing is written.
#[derive(Clone, Copy)]
struct ReadOnly<'a>(&'a Store);

impl Reread for ReadOnly<'_> {
    type Error = FindError;

    fn reread(&self, view: &ExecutionView) -> Result<ExecutionView, FindError> {
        find(self.0, &view.id().to_string())
    }

    fn status(&self, view: &ExecutionView) -> crate::engine::ExecutionStatus {
        view.status()
    }

    fn history_files(&self) -> Vec<std::path::PathBuf> {
        self.0.history_files().to_vec()
    }
}

/// `logs ID [--follow]`: returns the exit code (the execution's, with --follow).
pub fn logs(store: &Store, id: &str, follow: bool) -> u8 {
    let mut view = match find(store, id) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("workflow-mcp: {e}");
            return 1;
        }
    };
    let mut follower = Follow::new(ReadOnly(store), &view);
    let mut since = 0;
    let stdout = std::io::stdout();
    let terminal = stdout.is_terminal();
    loop {
        // The state first: a final state means the files hold every line.
        let final_state = view.state().is_terminal();
        let page = LogQuery {
            since_seq: Some(since),
            max_lines: 10_000,
            max_bytes: 4 << 20,
            ..LogQuery::default()
        }
        .run(&view.snapshot());
        let mut out = stdout.lock();
        if let Some(o) = &page.omitted {
            let _ = writeln!(out, "[... {} lines no longer kept ...]", o.lines);
        }
        for l in &page.lines {
            let text = for_output(&l.text, terminal);
            let _ = match l.stream {
                Stream::Stdout => writeln!(out, "{text}"),
                Stream::Stderr => writeln!(out, "! {text}"),
            };
        }
        let _ = out.flush();
        drop(out);
        since = page.next_seq;
        if page.has_more {
            continue;
        }
        if !follow {
            return 0;
        }
        if final_state {
            let s = view.status();
            eprintln!("workflow-mcp: {}", Summary(&s).outcome());
            return exit_code(s.state, s.exit_code, view.signal());
        }
        follower.changed_blocking();
        view = match follower.now_blocking() {
            Ok(v) => v.clone(),
            Err(e) => {
                eprintln!("workflow-mcp: {e}");
                return 1;
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history that cannot be read is said (on stderr, exit 1), never listed as "0 of 0".
    #[test]
    fn a_busy_history_fails_the_command_instead_of_showing_nothing() {
        let dir = std::env::temp_dir().join(format!("wfmcp-cli-{}-busy", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::open(&dir).unwrap();
        let readers = [Store::open_reader(&dir).unwrap(), Store::open_reader(&dir).unwrap()];
        let locks = crate::store::hold_read_locks(&dir.join("history.db"));
        // Both wait on the lock at once (a waiting read takes SQLite's ~10 s).
        let (listed, found) = std::thread::scope(|s| {
            let listed = s.spawn(|| list(&readers[0], None, None, 10, false));
            let found = s.spawn(|| find(&readers[1], "abcd").err());
            (listed.join().unwrap(), found.join().unwrap())
        });
        drop(locks);
        assert_eq!(listed, 1, "history");
        assert!(
            matches!(found, Some(FindError::Read(ReadError::Busy { .. }))),
            "a prefix is looked up, not taken for an unknown id: {found:?}"
        );
        drop((store, readers));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// `history --running` says who owns each execution: a detached one its supervisor; one whose owner is
    /// gone is lost, its owner named as it was.
    #[test]
    fn an_owner_is_named_by_its_role_and_pid_or_as_gone() {
        let dir = std::env::temp_dir().join(format!("wfmcp-cli-{}-owners", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (supervisor, _) = Store::open_as(&dir, Role::Supervisor).unwrap();
        let owner = supervisor.instance().to_string();
        let rec = ExecutionRecord {
            state: ExecutionState::Running,
            ..ExecutionRecord::queued(Uuid::new_v4(), "w", vec!["prog".into()], &owner, crate::store::now_ms())
        };
        supervisor.insert(&rec).unwrap();
        let reader = Store::open_reader(&dir).unwrap();
        let named = |reader: &Store| {
            let (records, _) = reader.list_unfinished(None, 10).unwrap();
            let status = view(reader, records[0].clone()).status();
            (
                status.state,
                Owner::of(reader, &records[0], status.state == records[0].state).to_string(),
            )
        };
        let pid = std::process::id();
        assert_eq!(
            named(&reader),
            (ExecutionState::Running, format!("detached (supervisor pid {pid})"))
        );
        // Ended without a clean exit (its lock released, its row left): gone.
        drop(supervisor);
        assert_eq!(
            named(&reader),
            (ExecutionState::Lost, format!("gone (was supervisor pid {pid})"))
        );
        drop(reader);
        let _ = std::fs::remove_dir_all(dir);
    }
}
