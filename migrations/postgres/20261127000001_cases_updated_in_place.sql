-- A case's row gets a new version at every step. While any indexed column
-- changes, every index of the table gets a new entry for it; `current_step`
-- changes at nearly every step, so its index cost four index entries per
-- step. Without it, and with room left in each page, PostgreSQL updates the
-- row within its page (a heap-only tuple) and leaves the indexes alone.
-- Listing cases by step now reads them newest first through
-- `cases_by_created` and filters, which a page of a list stops early.
DROP INDEX cases_by_step;
ALTER TABLE cases SET (fillfactor = 70);
