-- The HTTP API's bearer tokens and the idempotency keys of the events sent
-- through it (see orchestrator/src/api).

-- A token is stored as the SHA-256 of its text, hex: the text is shown once
-- when it is created and cannot be read back. A revoked token keeps its row
-- so its name, recorded in history as `token:NAME`, is never given to
-- someone else.
CREATE TABLE api_tokens (
    name       TEXT PRIMARY KEY NOT NULL,
    role       TEXT NOT NULL
               CHECK (role IN ('gateway', 'officer', 'operator', 'auditor', 'admin')),
    hash       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

-- One row per (case, Idempotency-Key) of an event request. `fingerprint`
-- is the SHA-256 of the event name and body: the same key with another body
-- is a conflict. `status` and `response` stay NULL while the first request
-- is being applied; then they hold what it answered, for the retries.
CREATE TABLE api_idempotency (
    case_id     TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      INTEGER,
    response    TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (case_id, key)
);
