ALTER TABLE review_resolutions DROP CONSTRAINT review_resolutions_action_check;
ALTER TABLE review_resolutions ADD CONSTRAINT review_resolutions_action_check
    CHECK (action IN ('accept_as_is', 'apply_repeat', 'mark_refunded_outside', 'link_order',
                      'write_off', 'dismiss', 'closed_by_system', 'note'));
ALTER TABLE money_movements DISABLE TRIGGER money_movements_no_update;
DELETE FROM money_movements WHERE kind = 'chargeback_reversal';
ALTER TABLE money_movements ENABLE TRIGGER money_movements_no_update;
ALTER TABLE money_movements DROP CONSTRAINT money_movements_kind_check;
ALTER TABLE money_movements ADD CONSTRAINT money_movements_kind_check
    CHECK (kind IN ('payment', 'refund', 'reversal', 'chargeback', 'vat', 'vat_refund',
                    'commission', 'commission_refund'));
ALTER TABLE orders DROP COLUMN reinstated_minor;
ALTER TABLE payments
    DROP CONSTRAINT payments_reinstated_within_chargeback,
    DROP COLUMN reinstated_minor,
    DROP COLUMN chargeback_minor,
    DROP COLUMN dispute_lost,
    DROP COLUMN dispute_won,
    DROP COLUMN dispute_opened;
ALTER TABLE notifications
    DROP COLUMN chargeback_reason_code,
    DROP COLUMN chargeback_resolution;
