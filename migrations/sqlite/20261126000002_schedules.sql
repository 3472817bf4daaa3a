-- Workflow schedules (recurring sweeps such as a morning list of permits
-- falling due): when each fires next, and a record of every firing.
--
-- Several orchestrators share these rows. A tick is fired by whoever moves
-- `next_at` on from the value it read (a compare-and-set), in the same
-- transaction as the firing's record and its notification job, so a tick
-- is fired once, and a fired tick's message is never lost.

CREATE TABLE schedules (
    workflow   TEXT NOT NULL,
    schedule   TEXT NOT NULL,
    -- As in the workflow's latest version; a change restarts the count.
    cron       TEXT NOT NULL,
    timezone   TEXT NOT NULL,
    -- The next tick to fire; NULL when the expression has no more ticks.
    next_at    TEXT,
    -- Set while the workflow's latest version no longer has the schedule.
    retired_at TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (workflow, schedule)
);

CREATE INDEX schedules_due ON schedules (next_at) WHERE retired_at IS NULL;

-- What each fired tick did: the auditable record of a sweep. Only case ids
-- and due dates ever reach `job`; never a person's data.
CREATE TABLE schedule_firings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow    TEXT NOT NULL,
    schedule    TEXT NOT NULL,
    -- The scheduled instant this firing stands for.
    tick_at     TEXT NOT NULL,
    fired_at    TEXT NOT NULL,
    -- Cases listed in the message.
    cases       INTEGER NOT NULL CHECK (cases >= 0),
    status      TEXT NOT NULL
                CHECK (status IN ('sending', 'retrying', 'sent', 'failed', 'nothing_due')),
    -- Why it ended as it did, for people.
    outcome     TEXT,
    -- The notification's current attempt (0 when nothing is sent).
    attempt     INTEGER NOT NULL CHECK (attempt >= 0),
    attempt_id  TEXT UNIQUE,
    job         TEXT,
    -- `sending`: when the attempt times out; `retrying`: when the next starts.
    due_at      TEXT,
    finished_at TEXT,
    FOREIGN KEY (workflow, schedule) REFERENCES schedules (workflow, schedule),
    UNIQUE (workflow, schedule, tick_at)
);

CREATE INDEX schedule_firings_due ON schedule_firings (due_at)
    WHERE status IN ('sending', 'retrying');

-- A firing's notification is an attempt like a case's, so the outbox, the
-- dispatcher and the transport carry it unchanged; it belongs to a firing
-- instead of a case.
--
-- SQLite cannot drop a NOT NULL, so `attempts` is rebuilt. The outbox
-- refers to it by name: with the check of that reference deferred to the
-- commit, the rows copied back satisfy it again before anyone looks.
PRAGMA defer_foreign_keys = ON;

CREATE TEMP TABLE attempts_before AS SELECT * FROM attempts;
DROP TABLE attempts;

CREATE TABLE attempts (
    id            TEXT PRIMARY KEY NOT NULL,
    case_id       TEXT REFERENCES cases (id),
    firing_id     INTEGER REFERENCES schedule_firings (id),
    step          TEXT NOT NULL,
    handler       TEXT NOT NULL,
    queue         TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('scheduled', 'dispatched', 'finished')),
    scheduled_at  TEXT NOT NULL,
    dispatched_at TEXT,
    finished_at   TEXT,
    CHECK ((case_id IS NULL) <> (firing_id IS NULL))
);

INSERT INTO attempts
    (id, case_id, step, handler, queue, status, scheduled_at, dispatched_at, finished_at)
SELECT id, case_id, step, handler, queue, status, scheduled_at, dispatched_at, finished_at
FROM attempts_before;
DROP TABLE attempts_before;

CREATE INDEX attempts_by_case ON attempts (case_id);
CREATE INDEX attempts_out ON attempts (queue) WHERE status = 'dispatched';
CREATE INDEX attempts_by_firing ON attempts (firing_id) WHERE firing_id IS NOT NULL;
