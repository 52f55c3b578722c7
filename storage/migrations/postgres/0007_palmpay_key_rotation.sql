-- 0007: key rotation in the background (palmpay/store.py SQLite migration 5): when the rows last finished
-- moving to the active data key (old keys retire a backup window after that), the blind-index root's
-- rotation (the previous root, tried by lookups until every row is re-indexed and the backup window has
-- passed) and the root each row's indexes were computed under.
ALTER TABLE palmpay.key_state ADD COLUMN IF NOT EXISTS data_reencrypted_at DOUBLE PRECISION;
ALTER TABLE palmpay.key_state ADD COLUMN IF NOT EXISTS index_prev_key_id TEXT;
ALTER TABLE palmpay.key_state ADD COLUMN IF NOT EXISTS index_reindexed_at DOUBLE PRECISION;
ALTER TABLE palmpay.palm_pay_links ADD COLUMN IF NOT EXISTS index_key_id TEXT;
UPDATE palmpay.palm_pay_links SET index_key_id = (SELECT index_key_id FROM palmpay.key_state WHERE singleton = 1);
CREATE INDEX IF NOT EXISTS links_by_index_key ON palmpay.palm_pay_links (index_key_id);

INSERT INTO palmpay.schema_version (version, applied_at) VALUES (5, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'));
