-- The money movements of a person's action (domain::review): like the
-- ledger row they belong to (see 000020_review_actions), they name the
-- review resolution instead of a notification. Exactly one of the two.
ALTER TABLE money_movements
    ALTER COLUMN notification_id DROP NOT NULL,
    ADD COLUMN resolution_id BIGINT,
    ADD CONSTRAINT money_movements_one_cause
        CHECK (num_nonnulls(notification_id, resolution_id) = 1),
    ADD CONSTRAINT money_movements_resolution_fkey FOREIGN KEY (order_id, resolution_id)
        REFERENCES order_events (order_id, resolution_id);
