DROP INDEX settlement_payouts_paid_on_idx;
DROP INDEX settlement_lines_settled_at_idx;
ALTER TABLE settlement_lines DROP CONSTRAINT settlement_lines_kind_check;
ALTER TABLE settlement_lines ADD CONSTRAINT settlement_lines_kind_check
    CHECK (kind IN ('sale', 'refund', 'chargeback', 'reversal', 'fee', 'adjustment'));
