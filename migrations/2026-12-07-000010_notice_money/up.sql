-- The money a notice carries beside its gross (docs/finance.md, "The
-- money in the notice"): per payment, the VAT and the commission of the
-- notice that captured it, its payout side, and what its refunds gave
-- back. Facts that only grow, like the payment's paid and refunded totals,
-- so that money movements (domain::journal::movements) count them once per
-- notice whatever the arrival order.
ALTER TABLE payments
    -- VAT of the capturing notice, minor units of the order's currency.
    ADD COLUMN vat_minor BIGINT NOT NULL DEFAULT 0 CHECK (vat_minor >= 0),
    -- Its commission, exact: 10^-8 of the order currency's major unit.
    ADD COLUMN commission_e8 BIGINT NOT NULL DEFAULT 0 CHECK (commission_e8 >= 0),
    -- The same, rounded half away from zero to the minor unit (the books').
    ADD COLUMN commission_minor BIGINT NOT NULL DEFAULT 0 CHECK (commission_minor >= 0),
    -- PAYABLE_AMOUNT in PAYOUT_CURRENCY, signed as sent.
    ADD COLUMN payable_minor BIGINT,
    ADD COLUMN payout_currency TEXT CHECK (payout_currency ~ '^[A-Z]{3}$'),
    -- FX_RATE and FX_MARKUP as sent: exact decimal text (castable to NUMERIC).
    ADD COLUMN fx_rate TEXT CHECK (fx_rate ~ '^[0-9]+(\.[0-9]+)?$'),
    ADD COLUMN fx_markup TEXT CHECK (fx_markup ~ '^[0-9]+(\.[0-9]+)?$'),
    -- What refunds gave back: VAT (minor units), commission (exact and
    -- rounded running total), and their PAYABLE_AMOUNT summed, signed.
    ADD COLUMN refunded_vat_minor BIGINT NOT NULL DEFAULT 0 CHECK (refunded_vat_minor >= 0),
    ADD COLUMN refunded_commission_e8 BIGINT NOT NULL DEFAULT 0
        CHECK (refunded_commission_e8 >= 0),
    ADD COLUMN refunded_commission_minor BIGINT NOT NULL DEFAULT 0
        CHECK (refunded_commission_minor >= 0),
    ADD COLUMN refunded_payable_minor BIGINT,
    ADD COLUMN refunded_payout_currency TEXT CHECK (refunded_payout_currency ~ '^[A-Z]{3}$'),
    ADD CONSTRAINT payments_payable_has_currency
        CHECK ((payable_minor IS NULL) = (payout_currency IS NULL)),
    ADD CONSTRAINT payments_refunded_payable_has_currency
        CHECK ((refunded_payable_minor IS NULL) = (refunded_payout_currency IS NULL));

-- VAT and commission move like payments and refunds.
ALTER TABLE money_movements DROP CONSTRAINT money_movements_kind_check;
ALTER TABLE money_movements ADD CONSTRAINT money_movements_kind_check
    CHECK (kind IN ('payment', 'refund', 'reversal', 'chargeback', 'vat', 'vat_refund',
                    'commission', 'commission_refund'));
