-- The deductions a settlement line's fee was summed from (a mapping's
-- fee_columns: VAT, commission, affiliate, FX...), each kept as the export
-- wrote it: a JSON array [{"column": "VAT", "minor": 190}, ...] in minor
-- units of the line's currency, in the mapping's order. NULL when the fee
-- came from one column. The parts sum to fee_minor (the import checks it;
-- so does this constraint). Text, not jsonb, so the order is the file's.
ALTER TABLE settlement_lines ADD COLUMN fee_parts text;

CREATE FUNCTION settlement_fee_parts_sum(parts text) RETURNS int8
    LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT coalesce(sum((p ->> 'minor')::int8), 0)::int8
    FROM jsonb_array_elements(parts::jsonb) AS p
$$;

ALTER TABLE settlement_lines ADD CONSTRAINT settlement_lines_fee_parts_sum
    CHECK (fee_parts IS NULL OR settlement_fee_parts_sum(fee_parts) = fee_minor);
