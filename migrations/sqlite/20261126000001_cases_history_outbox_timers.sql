-- Deployed definitions, cases, their append-only history, attempts, the
-- transactional outbox of jobs and durable timers.
--
-- Timestamps are TEXT in RFC 3339 with a +00:00 offset, as sqlx writes
-- chrono's DateTime<Utc>: such strings sort in time order, so `<=` and
-- ORDER BY on them are correct. JSON columns are TEXT.

CREATE TABLE definitions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL CHECK (version BETWEEN 1 AND 4294967295),
    -- SHA-256 of the source, hex.
    hash        TEXT NOT NULL,
    source      TEXT NOT NULL,
    deployed_at TEXT NOT NULL,
    UNIQUE (name, version)
);

CREATE TABLE cases (
    id            TEXT PRIMARY KEY NOT NULL,
    definition_id INTEGER NOT NULL REFERENCES definitions (id),
    status        TEXT NOT NULL CHECK (status IN ('active', 'completed', 'cancelled')),
    outcome       TEXT,
    current_step  TEXT NOT NULL,
    -- The engine's CaseState: the truth the columns above are copied from.
    state         TEXT NOT NULL,
    -- The seq the case's next history event gets.
    next_seq      INTEGER NOT NULL CHECK (next_seq > 0),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE INDEX cases_by_created ON cases (created_at DESC, id DESC);
CREATE INDEX cases_by_definition ON cases (definition_id, created_at DESC);
CREATE INDEX cases_by_status ON cases (status, created_at DESC);
CREATE INDEX cases_by_step ON cases (current_step, created_at DESC);

CREATE TABLE history (
    case_id TEXT NOT NULL REFERENCES cases (id),
    seq     INTEGER NOT NULL CHECK (seq > 0),
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    -- The event's type, also inside the payload; here for queries.
    kind    TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (case_id, seq)
);

-- History is what auditors trust: rows are added, never changed.
CREATE TRIGGER history_no_update BEFORE UPDATE ON history
BEGIN
    SELECT RAISE(ABORT, 'history is append-only: UPDATE refused');
END;

CREATE TRIGGER history_no_delete BEFORE DELETE ON history
BEGIN
    SELECT RAISE(ABORT, 'history is append-only: DELETE refused');
END;

-- One row per attempt the engine scheduled; the id is the attempt id.
CREATE TABLE attempts (
    id            TEXT PRIMARY KEY NOT NULL,
    case_id       TEXT NOT NULL REFERENCES cases (id),
    step          TEXT NOT NULL,
    handler       TEXT NOT NULL,
    queue         TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('scheduled', 'dispatched', 'finished')),
    scheduled_at  TEXT NOT NULL,
    dispatched_at TEXT,
    finished_at   TEXT
);

CREATE INDEX attempts_by_case ON attempts (case_id);
-- What the transport holds, per queue: small, unlike the table.
CREATE INDEX attempts_out ON attempts (queue) WHERE status = 'dispatched';

-- Jobs to hand to the transport. A row stays after dispatch
-- (dispatched_at set) so that a lost transport can be refilled.
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    attempt_id    TEXT NOT NULL UNIQUE REFERENCES attempts (id),
    queue         TEXT NOT NULL,
    job           TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    dispatched_at TEXT
);

CREATE INDEX outbox_waiting ON outbox (id) WHERE dispatched_at IS NULL;
CREATE INDEX outbox_waiting_by_queue ON outbox (queue, id) WHERE dispatched_at IS NULL;

-- The timers set in each case's state, for the timer loop to find.
CREATE TABLE timers (
    case_id TEXT NOT NULL REFERENCES cases (id),
    id      TEXT NOT NULL,
    due_at  TEXT NOT NULL,
    kind    TEXT NOT NULL,
    PRIMARY KEY (case_id, id)
);

CREATE INDEX timers_by_due ON timers (due_at);
