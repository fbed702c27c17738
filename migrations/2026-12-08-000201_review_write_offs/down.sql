DROP INDEX review_resolutions_written_off_idx;
ALTER TABLE review_resolutions
    DROP CONSTRAINT review_resolutions_written_off_currency,
    DROP COLUMN written_off_minor;
ALTER TABLE review_resolutions DROP CONSTRAINT review_resolutions_action_check;
ALTER TABLE review_resolutions ADD CONSTRAINT review_resolutions_action_check CHECK (action IN (
                         'accept_as_is', 'apply_repeat', 'mark_refunded_outside', 'link_order',
                         'write_off', 'dismiss', 'closed_by_system', 'note'));
