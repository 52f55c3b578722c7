-- 0003: the agent's audit trail, record format version 2 (memory/audit.py's docstring):
-- keyed HMAC chain (fmt 2), one record per (decision id, kind) with explicit revisions,
-- and a keyed head. Rows written before stay fmt 1 (the legacy segment), revision 0,
-- except duplicates older code wrote under one (decision id, kind): numbered in seq order.
ALTER TABLE payops.audit_log ADD COLUMN fmt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE payops.audit_log ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payops.audit_log ADD COLUMN supersedes BIGINT;
ALTER TABLE payops.audit_log ADD COLUMN key_id TEXT;
ALTER TABLE payops.audit_head ADD COLUMN mac TEXT;

WITH numbered AS (
    SELECT seq, (ROW_NUMBER() OVER w) - 1 AS rev, LAG(seq) OVER w AS prev_seq
    FROM payops.audit_log WINDOW w AS (PARTITION BY decision_id, kind ORDER BY seq)
)
UPDATE payops.audit_log a SET revision = n.rev, supersedes = n.prev_seq
FROM numbered n WHERE a.seq = n.seq AND n.rev > 0;

CREATE UNIQUE INDEX audit_log_once ON payops.audit_log (decision_id, kind, revision);
