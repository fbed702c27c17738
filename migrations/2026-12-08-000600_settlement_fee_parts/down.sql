ALTER TABLE settlement_lines DROP CONSTRAINT settlement_lines_fee_parts_sum;
DROP FUNCTION settlement_fee_parts_sum(text);
ALTER TABLE settlement_lines DROP COLUMN fee_parts;
