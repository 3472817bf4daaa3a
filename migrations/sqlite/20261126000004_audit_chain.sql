-- The tamper-evident history: a hash chain per case, and checkpoints that
-- chain the cases' heads together (see orchestrator/src/audit).

-- The event's hash, chained to the previous event's.
ALTER TABLE history ADD COLUMN hash TEXT;
-- The hash of the case's last event, and the last seq a checkpoint holds.
ALTER TABLE cases ADD COLUMN history_head TEXT;
ALTER TABLE cases ADD COLUMN checkpointed_seq INTEGER NOT NULL DEFAULT 0;

CREATE TABLE audit_checkpoints (
    id       INTEGER PRIMARY KEY NOT NULL CHECK (id > 0),
    at       TEXT NOT NULL,
    previous TEXT NOT NULL,
    hash     TEXT NOT NULL
);

-- The heads of the cases that changed since the checkpoint before.
CREATE TABLE audit_checkpoint_entries (
    checkpoint_id INTEGER NOT NULL REFERENCES audit_checkpoints (id),
    case_id       TEXT NOT NULL,
    seq           INTEGER NOT NULL CHECK (seq > 0),
    head          TEXT NOT NULL,
    PRIMARY KEY (checkpoint_id, case_id)
);

CREATE INDEX audit_checkpoint_entries_by_case ON audit_checkpoint_entries (case_id);

-- Checkpoints are history too.
CREATE TRIGGER audit_checkpoints_no_change BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only: UPDATE refused');
END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only: DELETE refused');
END;
CREATE TRIGGER audit_checkpoint_entries_no_change BEFORE UPDATE ON audit_checkpoint_entries
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only: UPDATE refused');
END;
CREATE TRIGGER audit_checkpoint_entries_no_delete BEFORE DELETE ON audit_checkpoint_entries
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only: DELETE refused');
END;
