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
    next_at    TIMESTAMPTZ,
    -- Set while the workflow's latest version no longer has the schedule.
    retired_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workflow, schedule)
);

CREATE INDEX schedules_due ON schedules (next_at) WHERE retired_at IS NULL;

-- What each fired tick did: the auditable record of a sweep. Only case ids
-- and due dates ever reach `job`; never a person's data.
CREATE TABLE schedule_firings (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow    TEXT NOT NULL,
    schedule    TEXT NOT NULL,
    -- The scheduled instant this firing stands for.
    tick_at     TIMESTAMPTZ NOT NULL,
    fired_at    TIMESTAMPTZ NOT NULL,
    -- Cases listed in the message.
    cases       BIGINT NOT NULL CHECK (cases >= 0),
    status      TEXT NOT NULL
                CHECK (status IN ('sending', 'retrying', 'sent', 'failed', 'nothing_due')),
    -- Why it ended as it did, for people.
    outcome     TEXT,
    -- The notification's current attempt (0 when nothing is sent).
    attempt     BIGINT NOT NULL CHECK (attempt >= 0),
    attempt_id  TEXT UNIQUE,
    job         JSONB,
    -- `sending`: when the attempt times out; `retrying`: when the next starts.
    due_at      TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    FOREIGN KEY (workflow, schedule) REFERENCES schedules (workflow, schedule),
    UNIQUE (workflow, schedule, tick_at)
);

CREATE INDEX schedule_firings_due ON schedule_firings (due_at)
    WHERE status IN ('sending', 'retrying');

-- A firing's notification is an attempt like a case's, so the outbox, the
-- dispatcher and the transport carry it unchanged; it belongs to a firing
-- instead of a case.
ALTER TABLE attempts ALTER COLUMN case_id DROP NOT NULL;
ALTER TABLE attempts ADD COLUMN firing_id BIGINT REFERENCES schedule_firings (id);
ALTER TABLE attempts ADD CONSTRAINT attempts_one_owner
    CHECK ((case_id IS NULL) <> (firing_id IS NULL));
CREATE INDEX attempts_by_firing ON attempts (firing_id) WHERE firing_id IS NOT NULL;
