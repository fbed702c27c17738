-- Review actions that book what a person accepted (domain::review):
-- `collect_difference` (a payment of the wrong amount booked as captured,
-- the difference left to collect) and `book_refund` (a refund in another
-- currency booked in its own). And the amount a write-off writes off,
-- signed as the write-off schedule shows it: positive, booked money the
-- processor will never pay out (a shortfall, a loss); negative, money the
-- processor paid that nothing booked (an excess). `amount_minor` keeps
-- its magnitude; the journal books it to the write-off account
-- (domain::review::write_off_movement).
ALTER TABLE review_resolutions DROP CONSTRAINT review_resolutions_action_check;
ALTER TABLE review_resolutions ADD CONSTRAINT review_resolutions_action_check CHECK (action IN (
                         'accept_as_is', 'apply_repeat', 'mark_refunded_outside', 'link_order',
                         'write_off', 'dismiss', 'collect_difference', 'book_refund',
                         'closed_by_system', 'note'));
ALTER TABLE review_resolutions
    ADD COLUMN written_off_minor BIGINT CHECK (written_off_minor <> 0),
    ADD CONSTRAINT review_resolutions_written_off_currency
        CHECK (written_off_minor IS NULL OR currency IS NOT NULL);
CREATE INDEX review_resolutions_written_off_idx ON review_resolutions (created_at)
    WHERE written_off_minor IS NOT NULL;
