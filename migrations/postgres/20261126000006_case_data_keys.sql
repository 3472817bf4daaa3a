-- Each case's data key, which seals its personal values in the state, the
-- history and queued jobs. Stored wrapped under a master key from
-- configuration (`v1:KEY_ID:NONCE:CIPHERTEXT`), never in clear. Set to NULL
-- when the case's retention ends: its personal data can then no longer be
-- read anywhere, while its history rows, and their hash chain, stay as they
-- were written.
ALTER TABLE cases ADD COLUMN data_key TEXT;
