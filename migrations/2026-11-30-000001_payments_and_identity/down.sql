DROP TRIGGER order_events_no_truncate ON order_events;
DROP INDEX review_items_open_order_idx;
ALTER TABLE review_items DROP COLUMN processor_ref;
DROP INDEX notifications_repeat_of_idx;
DROP INDEX notifications_first_of_identity;
DELETE FROM review_items WHERE notification_id IN (SELECT id FROM notifications WHERE outcome = 'duplicate');
DELETE FROM notifications WHERE outcome = 'duplicate';
ALTER TABLE notifications
    DROP CONSTRAINT notifications_outcome_check,
    ADD CONSTRAINT notifications_outcome_check CHECK (outcome IN (
        'applied', 'ignored', 'mismatch', 'order_not_found', 'invalid_signature', 'malformed')),
    DROP COLUMN fraud_denied,
    DROP COLUMN repeat_of,
    DROP COLUMN identity;
ALTER TABLE orders DROP COLUMN charged_back_minor;
DROP TABLE payments;
