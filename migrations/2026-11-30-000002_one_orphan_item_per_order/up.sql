-- One open orphan_payment item per unknown order, not one per
-- notification: the order is what a person imports or links. Earlier
-- duplicates are closed, saying why, before the rule is enforced.
UPDATE review_items AS r
SET status = 'resolved', resolved_by = 'system', resolved_at = now(),
    resolution_note = 'merged: one open orphan_payment item per unknown order'
WHERE r.kind = 'orphan_payment' AND r.status = 'open'
  AND EXISTS (
      SELECT 1 FROM review_items AS older
      WHERE older.kind = 'orphan_payment' AND older.status = 'open'
        AND older.order_ref = r.order_ref AND older.id < r.id
  );
CREATE UNIQUE INDEX review_items_one_open_orphan_per_order
    ON review_items (order_ref) WHERE kind = 'orphan_payment' AND status = 'open';
