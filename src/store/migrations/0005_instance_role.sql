-- What kind of process an instance is (server | supervisor | command): who owns an execution, as people are
-- told. Instances registered before this knew only servers.
ALTER TABLE instances ADD COLUMN role TEXT NOT NULL DEFAULT 'server';
