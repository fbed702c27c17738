-- A settlement line's identity no longer depends on how the export writes
-- its dates (issue 22 item 5): the same export written with date-only
-- dates, or with another `date_format` through `--mapping`, is the same
-- lines. line_key becomes the SHA-256 of the line's values without
-- settled_at (domain::settlement::SettlementLine::key), and occurrence
-- counts the identical copies under that key.
--
-- Rows imported before are re-keyed here, so re-importing a file imported
-- under the old rule still adds nothing. The table is append-only: the
-- trigger is lifted for this one rewrite of the identity columns (nothing
-- about the money changes), and the uniqueness checked once at the end.
ALTER TABLE settlement_lines DISABLE TRIGGER settlement_lines_no_update;
ALTER TABLE settlement_lines DROP CONSTRAINT settlement_lines_batch_id_line_key_occurrence_key;

UPDATE settlement_lines l
SET line_key = k.line_key, occurrence = k.occurrence
FROM (
    SELECT id, line_key,
           row_number() OVER (PARTITION BY batch_id, line_key ORDER BY id)::INTEGER AS occurrence
    FROM (
        SELECT id, batch_id,
               encode(sha256(convert_to(
                   batch_id || chr(31) ||
                   coalesce(processor_ref, '') || chr(31) ||
                   coalesce(order_ref, '') || chr(31) ||
                   kind || chr(31) ||
                   gross_minor::TEXT || chr(31) ||
                   fee_minor::TEXT || chr(31) ||
                   net_minor::TEXT || chr(31) ||
                   currency || chr(31), 'UTF8')), 'hex') AS line_key
        FROM settlement_lines
    ) keyed
) k
WHERE l.id = k.id;

ALTER TABLE settlement_lines
    ADD CONSTRAINT settlement_lines_batch_id_line_key_occurrence_key
    UNIQUE (batch_id, line_key, occurrence);
ALTER TABLE settlement_lines ENABLE TRIGGER settlement_lines_no_update;
