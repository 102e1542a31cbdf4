-- Executions and the server instances that run them. Times are milliseconds since the Unix epoch.
CREATE TABLE instances (
    id          TEXT PRIMARY KEY,   -- UUID of one server process
    pid         INTEGER NOT NULL,
    started_at  INTEGER NOT NULL
);

CREATE TABLE executions (
    id              TEXT PRIMARY KEY,   -- UUID
    workflow        TEXT NOT NULL,
    params          TEXT NOT NULL,      -- JSON object: every param with a value
    argv            TEXT NOT NULL,      -- JSON array
    cwd             TEXT NOT NULL,
    idempotency_key TEXT,
    state           TEXT NOT NULL,      -- queued | running | succeeded | failed | cancelled | timed_out | failed_to_start | lost
    exit_code       INTEGER,
    signal          INTEGER,
    error           TEXT,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    pid             INTEGER,            -- the leader (and its process group)
    pid_start       INTEGER,            -- the leader's start time (clock ticks after boot): a reused pid has another
    owner           TEXT NOT NULL,      -- the instance that runs (or ran) it
    stop_request    TEXT,               -- cancel | timeout | shutdown, asked for by any instance
    output          TEXT,               -- JSON: line and byte counters, loss, disk use
    progress        TEXT,               -- JSON: what its structured events add up to
    held_open       TEXT,               -- JSON array of streams
    log_bytes       INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX executions_by_creation ON executions (created_at);
CREATE INDEX executions_by_workflow ON executions (workflow, created_at);
CREATE INDEX executions_unfinished ON executions (state) WHERE state IN ('queued', 'running');
CREATE UNIQUE INDEX executions_by_key ON executions (workflow, idempotency_key) WHERE idempotency_key IS NOT NULL;
