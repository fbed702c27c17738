ALTER TABLE order_events
    DROP CONSTRAINT order_events_order_resolution_key,
    DROP CONSTRAINT order_events_one_cause,
    DROP COLUMN resolution_id;
-- Rows of people's actions have no notification: NOT NULL cannot come back
-- while they exist, which is the point of a ledger.
ALTER TABLE order_events ALTER COLUMN notification_id SET NOT NULL;
DROP TRIGGER review_items_resolved_final ON review_items;
DROP FUNCTION review_items_resolved_is_final();
DROP TRIGGER review_items_resolution_recorded ON review_items;
DROP FUNCTION review_items_record_resolution();
DROP TABLE review_resolutions;
DROP FUNCTION review_resolutions_append_only();
