ALTER TABLE payments
    DROP CONSTRAINT payments_charged_back_payable_has_currency,
    DROP COLUMN charged_back_vat_minor, DROP COLUMN charged_back_commission_e8,
    DROP COLUMN charged_back_commission_minor, DROP COLUMN charged_back_payable_minor,
    DROP COLUMN charged_back_payout_currency;
ALTER TABLE notifications
    DROP CONSTRAINT notifications_payable_has_currency,
    DROP COLUMN vat_minor, DROP COLUMN commission_e8, DROP COLUMN payable_minor,
    DROP COLUMN payout_currency, DROP COLUMN fx_rate, DROP COLUMN fx_markup;
