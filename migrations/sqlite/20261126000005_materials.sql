-- Files uploaded for a case (photos, scans; see orchestrator/src/api/materials.rs).
--
-- A case holds each content once: `sha256` (hex) names it, and the same
-- file uploaded again finds this row. The file itself is not here: it lies
-- sealed (encrypted) in the uploads directory under `stored_as`, a name
-- generated at upload (a UUID), never one taken from the request. Its type
-- (`media_type`) was decided from the content's first bytes. The upload is
-- also in the case's history (`material_uploaded`), so the hash chain
-- covers the content hash.
CREATE TABLE materials (
    case_id     TEXT NOT NULL REFERENCES cases (id),
    sha256      TEXT NOT NULL CHECK (length(sha256) = 64),
    kind        TEXT NOT NULL,
    media_type  TEXT NOT NULL,
    size        INTEGER NOT NULL CHECK (size > 0),
    stored_as   TEXT NOT NULL UNIQUE,
    uploaded_at TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    PRIMARY KEY (case_id, sha256)
);
