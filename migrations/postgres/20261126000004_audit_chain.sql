-- The tamper-evident history: a hash chain per case, and checkpoints that
-- chain the cases' heads together (see orchestrator/src/audit).

-- The event's hash, chained to the previous event's.
ALTER TABLE history ADD COLUMN hash TEXT;
-- The hash of the case's last event, and the last seq a checkpoint holds.
ALTER TABLE cases ADD COLUMN history_head TEXT;
ALTER TABLE cases ADD COLUMN checkpointed_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE audit_checkpoints (
    id       BIGINT PRIMARY KEY CHECK (id > 0),
    at       TIMESTAMPTZ NOT NULL,
    previous TEXT NOT NULL,
    hash     TEXT NOT NULL
);

-- The heads of the cases that changed since the checkpoint before.
CREATE TABLE audit_checkpoint_entries (
    checkpoint_id BIGINT NOT NULL REFERENCES audit_checkpoints (id),
    case_id       TEXT NOT NULL,
    seq           BIGINT NOT NULL CHECK (seq > 0),
    head          TEXT NOT NULL,
    PRIMARY KEY (checkpoint_id, case_id)
);

CREATE INDEX audit_checkpoint_entries_by_case ON audit_checkpoint_entries (case_id);

-- Checkpoints are history too.
CREATE TRIGGER audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION history_is_append_only();
CREATE TRIGGER audit_checkpoint_entries_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoint_entries
    FOR EACH ROW EXECUTE FUNCTION history_is_append_only();
