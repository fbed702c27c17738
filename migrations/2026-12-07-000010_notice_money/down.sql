ALTER TABLE money_movements DROP CONSTRAINT money_movements_kind_check;
ALTER TABLE money_movements ADD CONSTRAINT money_movements_kind_check
    CHECK (kind IN ('payment', 'refund', 'reversal', 'chargeback'));
ALTER TABLE payments
    DROP CONSTRAINT payments_payable_has_currency,
    DROP CONSTRAINT payments_refunded_payable_has_currency,
    DROP COLUMN vat_minor, DROP COLUMN commission_e8, DROP COLUMN commission_minor,
    DROP COLUMN payable_minor, DROP COLUMN payout_currency, DROP COLUMN fx_rate,
    DROP COLUMN fx_markup, DROP COLUMN refunded_vat_minor, DROP COLUMN refunded_commission_e8,
    DROP COLUMN refunded_commission_minor, DROP COLUMN refunded_payable_minor,
    DROP COLUMN refunded_payout_currency;
