-- Executions on a remote engine (Slurm): the job and where it stands, as JSON {system, id, state, reason, node}.
ALTER TABLE executions ADD COLUMN job TEXT;
