-- Review actions: every resolution of a review item is a row of an
-- append-only ledger (who, when, why, which action, which item, order and
-- notification), and an action that changes an order's money (a refund
-- made outside the processor) is a ledger row of the order like a
-- notification's, with its money movements (domain::review).

CREATE TABLE review_resolutions (
    id               BIGSERIAL PRIMARY KEY,
    -- A resolved item cannot be resolved again: one row per item.
    review_item_id   BIGINT NOT NULL UNIQUE REFERENCES review_items (id),
    kind             TEXT NOT NULL,
    -- domain::review::ReviewAction, or `closed_by_system` (the system closed
    -- an item whose condition stopped holding), or `note` (resolved before
    -- actions existed).
    action           TEXT NOT NULL CHECK (action IN (
                         'accept_as_is', 'apply_repeat', 'mark_refunded_outside', 'link_order',
                         'write_off', 'dismiss', 'closed_by_system', 'note')),
    resolved_by      TEXT NOT NULL CHECK (length(btrim(resolved_by)) > 0),
    note             TEXT NOT NULL,
    -- The order the action concerned (for link_order: the order linked to).
    order_ref        TEXT,
    notification_id  BIGINT REFERENCES notifications (id),
    -- The money the action concerned (refunded, written off, applied), when any.
    amount_minor     BIGINT CHECK (amount_minor >= 0),
    currency         TEXT CHECK (currency ~ '^[A-Z]{3}$'),
    -- The item a person named when resolving a group of items together.
    group_of         BIGINT REFERENCES review_items (id),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((amount_minor IS NULL) = (currency IS NULL))
);
CREATE INDEX review_resolutions_order_idx ON review_resolutions (order_ref);
CREATE INDEX review_resolutions_time_idx ON review_resolutions (created_at);

CREATE FUNCTION review_resolutions_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'review_resolutions is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER review_resolutions_no_update BEFORE UPDATE OR DELETE ON review_resolutions
    FOR EACH ROW EXECUTE FUNCTION review_resolutions_append_only();
CREATE TRIGGER review_resolutions_no_truncate BEFORE TRUNCATE ON review_resolutions
    FOR EACH STATEMENT EXECUTE FUNCTION review_resolutions_append_only();

-- Items resolved before this migration keep their resolution as a row.
INSERT INTO review_resolutions (review_item_id, kind, action, resolved_by, note, order_ref,
                                notification_id, created_at)
SELECT id, kind,
       CASE WHEN resolved_by = 'system' THEN 'closed_by_system' ELSE 'note' END,
       coalesce(nullif(btrim(resolved_by), ''), 'unknown'), coalesce(resolution_note, ''),
       order_ref, notification_id, resolved_at
FROM review_items
WHERE status = 'resolved';

-- Every resolution is a row, also those the system makes when a
-- condition stops holding (store::apply, store::batch): a person's action
-- writes its row first (store::review), so the trigger adds one only when
-- there is none.
CREATE FUNCTION review_items_record_resolution() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM review_resolutions WHERE review_item_id = NEW.id) THEN
        INSERT INTO review_resolutions (review_item_id, kind, action, resolved_by, note,
                                        order_ref, notification_id, created_at)
        VALUES (NEW.id, NEW.kind, 'closed_by_system',
                coalesce(nullif(btrim(NEW.resolved_by), ''), 'system'),
                coalesce(NEW.resolution_note, ''), NEW.order_ref, NEW.notification_id,
                coalesce(NEW.resolved_at, now()));
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER review_items_resolution_recorded AFTER UPDATE OF status ON review_items
    FOR EACH ROW WHEN (OLD.status = 'open' AND NEW.status = 'resolved')
    EXECUTE FUNCTION review_items_record_resolution();

-- A resolved item stays resolved, with the resolution it was given.
CREATE FUNCTION review_items_resolved_is_final() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'review item % is resolved: a resolution is final', OLD.id;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER review_items_resolved_final BEFORE UPDATE ON review_items
    FOR EACH ROW WHEN (OLD.status = 'resolved')
    EXECUTE FUNCTION review_items_resolved_is_final();

-- A person's action that changes an order (a refund made outside the
-- processor) is a ledger row without a notification: it names its
-- resolution instead. Exactly one of the two. (Its money movements follow
-- in 000032: money_movements is created by 000030, after this one.)
ALTER TABLE order_events
    ALTER COLUMN notification_id DROP NOT NULL,
    ADD COLUMN resolution_id BIGINT REFERENCES review_resolutions (id),
    ADD CONSTRAINT order_events_one_cause
        CHECK (num_nonnulls(notification_id, resolution_id) = 1),
    ADD CONSTRAINT order_events_order_resolution_key UNIQUE (order_id, resolution_id);
