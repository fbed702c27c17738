-- The actions of the chargeback lifecycle (000100) and of the write-offs
-- (000201), together: each of those migrations listed only its own.
ALTER TABLE review_resolutions DROP CONSTRAINT review_resolutions_action_check;
ALTER TABLE review_resolutions ADD CONSTRAINT review_resolutions_action_check CHECK (action IN (
    'accept_as_is', 'apply_repeat', 'mark_refunded_outside', 'link_order', 'write_off',
    'dismiss', 'collect_difference', 'book_refund', 'book_reinstatement', 'closed_by_system',
    'note'));
