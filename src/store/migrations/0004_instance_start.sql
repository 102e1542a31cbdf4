-- An instance's process start time (clock ticks after boot): with the pid it names one process, so an instance
-- whose lock file is gone can still be told alive or dead.
ALTER TABLE instances ADD COLUMN pid_start INTEGER;
