-- list_executions with a state filter, newest first, without reading every row.
CREATE INDEX executions_by_state ON executions (state, created_at);
