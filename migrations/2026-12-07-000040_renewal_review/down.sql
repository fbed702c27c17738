DROP INDEX review_items_one_open_sweep_item;
CREATE UNIQUE INDEX review_items_one_open_sweep_item
    ON review_items (kind, order_ref, (coalesce(processor_ref, '')))
    WHERE status = 'open' AND kind IN ('stale_order', 'unsettled_payment', 'refund_not_debited');
ALTER TABLE subscription_orders DROP COLUMN paid_at;
