//! The writer thread every write of a process goes through.

use std::sync::mpsc;

use rusqlite::Connection;

pub(super) type Op = Box<dyn FnOnce(&Connection) -> rusqlite::Result<()> + Send>;
pub(super) type Reply = mpsc::SyncSender<rusqlite::Result<()>>;

/// Runs writes one after another, each batch of waiting writes in one transaction (each write in its own
/// savepoint, so one failure does not undo the others).
pub(super) fn writer_loop(conn: Connection, rx: mpsc::Receiver<(Op, Option<Reply>)>) {
    let mut warned = false;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 256
            && let Ok(more) = rx.try_recv()
        {
            batch.push(more);
        }
        let began = conn.execute_batch("BEGIN IMMEDIATE");
        // Answered after the commit: whoever waits for a write then reads what it wrote.
        let mut replies = Vec::new();
        for (op, reply) in batch {
            let result = began.as_ref().map_err(clone_err).and_then(|()| {
                conn.execute_batch("SAVEPOINT op")?;
                match op(&conn) {
                    Ok(()) => conn.execute_batch("RELEASE op"),
                    Err(e) => {
                        conn.execute_batch("ROLLBACK TO op; RELEASE op")?;
                        Err(e)
                    }
                }
            });
            if let Err(e) = &result
                && !warned
                && reply.is_none()
            {
                tracing::warn!(error = %e, "writing the history failed; executions go on, their records may lag");
                warned = true;
            }
            if let Some(reply) = reply {
                replies.push((reply, result));
            }
        }
        let committed = match began {
            Ok(()) => conn.execute_batch("COMMIT").inspect_err(|e| {
                tracing::warn!(error = %e, "committing the history failed");
                let _ = conn.execute_batch("ROLLBACK");
            }),
            Err(e) => Err(e),
        };
        for (reply, result) in replies {
            let _ = reply.send(result.and_then(|()| committed.as_ref().map(|_| ()).map_err(clone_err)));
        }
    }
}

fn clone_err(e: &rusqlite::Error) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
        Some(e.to_string()),
    )
}
