-- Back to the identity that included settled_at (as seconds since the
-- epoch), occurrence counted under that key.
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
                   currency || chr(31) ||
                   floor(extract(epoch FROM settled_at))::BIGINT::TEXT || chr(31), 'UTF8')), 'hex') AS line_key
        FROM settlement_lines
    ) keyed
) k
WHERE l.id = k.id;

ALTER TABLE settlement_lines
    ADD CONSTRAINT settlement_lines_batch_id_line_key_occurrence_key
    UNIQUE (batch_id, line_key, occurrence);
ALTER TABLE settlement_lines ENABLE TRIGGER settlement_lines_no_update;
