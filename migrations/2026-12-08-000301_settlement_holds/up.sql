-- Settlement lines that hold money back (issue 22 item 4): a reserve
-- held or released, a dispute hold or its release. They settle no
-- payment (status `other`); the journal books each on an account of its
-- own (domain::journal::settlement_line_movement), as it books the gross
-- of `adjustment` and `fee` lines on the processor adjustments account.
ALTER TABLE settlement_lines DROP CONSTRAINT settlement_lines_kind_check;
ALTER TABLE settlement_lines ADD CONSTRAINT settlement_lines_kind_check
    CHECK (kind IN ('sale', 'refund', 'chargeback', 'reversal', 'fee', 'adjustment', 'reserve', 'dispute_hold'));

-- The clearing report reads lines by their date and payouts by theirs.
CREATE INDEX settlement_lines_settled_at_idx ON settlement_lines (settled_at);
CREATE INDEX settlement_payouts_paid_on_idx ON settlement_payouts (paid_on);
