-- The money a notice carries, kept with the notification row (issue 21,
-- Deliver 4): a notification applied later by a person (a late repeat
-- confirmed as a genuine refund, an orphan's payment linked to its order)
-- is rebuilt from its row, so the row keeps what `PaymentEvent.money`
-- needs, exactly as the notice sent it (signed: negative on a refund).
-- NULL where the notice did not send the field, and on every row recorded
-- before this migration: such a row is rebuilt without money (nothing
-- booked for VAT, commission or the payout side), as the notice would be
-- had it carried none.
ALTER TABLE notifications
    -- Σ IPN_VAT[] + IPN_SHIPPING_TAX, minor units of the order's currency.
    ADD COLUMN vat_minor BIGINT,
    -- IPN_COMMISSION, exact: 10^-8 of the order currency's major unit.
    ADD COLUMN commission_e8 BIGINT,
    -- PAYABLE_AMOUNT in PAYOUT_CURRENCY, signed as sent.
    ADD COLUMN payable_minor BIGINT,
    ADD COLUMN payout_currency TEXT CHECK (payout_currency ~ '^[A-Z]{3}$'),
    -- FX_RATE and FX_MARKUP as sent: exact decimal text.
    ADD COLUMN fx_rate TEXT CHECK (fx_rate ~ '^[0-9]+(\.[0-9]+)?$'),
    ADD COLUMN fx_markup TEXT CHECK (fx_markup ~ '^[0-9]+(\.[0-9]+)?$'),
    ADD CONSTRAINT notifications_payable_has_currency
        CHECK ((payable_minor IS NULL) = (payout_currency IS NULL));

-- What a chargeback notice gives back (docs/finance.md, "The money in the
-- notice"): the VAT and commission it carries, as absolute values, and its
-- PAYABLE_AMOUNT, signed as sent. Set once, with `reversed`; counted only
-- once the payment is charged back (paid, then reversed).
ALTER TABLE payments
    ADD COLUMN charged_back_vat_minor BIGINT NOT NULL DEFAULT 0
        CHECK (charged_back_vat_minor >= 0),
    ADD COLUMN charged_back_commission_e8 BIGINT NOT NULL DEFAULT 0
        CHECK (charged_back_commission_e8 >= 0),
    ADD COLUMN charged_back_commission_minor BIGINT NOT NULL DEFAULT 0
        CHECK (charged_back_commission_minor >= 0),
    ADD COLUMN charged_back_payable_minor BIGINT,
    ADD COLUMN charged_back_payout_currency TEXT
        CHECK (charged_back_payout_currency ~ '^[A-Z]{3}$'),
    ADD CONSTRAINT payments_charged_back_payable_has_currency
        CHECK ((charged_back_payable_minor IS NULL) = (charged_back_payout_currency IS NULL));
