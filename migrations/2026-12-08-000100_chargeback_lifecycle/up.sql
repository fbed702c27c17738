-- The chargeback lifecycle (issue 22, Deliver 3; docs/finance.md,
-- "Chargebacks").
--
-- A notice's dispute fields, kept with the notification row as they came
-- (clipped to 40 characters, control characters replaced): a
-- notification applied later by a person is rebuilt with them, and an
-- unknown resolution stays visible. NULL when the notice carried no
-- dispute (empty or NONE), and on every row recorded before this
-- migration.
ALTER TABLE notifications
    ADD COLUMN chargeback_resolution TEXT
        CHECK (length(chargeback_resolution) BETWEEN 1 AND 40),
    ADD COLUMN chargeback_reason_code TEXT
        CHECK (length(chargeback_reason_code) BETWEEN 1 AND 40);

-- A payment's dispute facts (they only grow): the resolutions received,
-- and what the chargeback took, fixed once when it first counted (paid,
-- and a notice took the money back) at what remained after the refunds
-- counted then. NULL until the chargeback counts. `reinstated_minor` is
-- derived from the others (all of it once won; before that what refunds
-- recorded after the chargeback gave back), kept for the reports' SQL.
ALTER TABLE payments
    ADD COLUMN dispute_opened BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN dispute_won BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN dispute_lost BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN chargeback_minor BIGINT CHECK (chargeback_minor >= 0),
    ADD COLUMN reinstated_minor BIGINT NOT NULL DEFAULT 0
        CHECK (reinstated_minor >= 0),
    ADD CONSTRAINT payments_reinstated_within_chargeback
        CHECK (reinstated_minor <= coalesce(chargeback_minor, 0));

-- Chargebacks booked before this migration took the whole payment; their
-- movements say so. They keep it, and what the refunds of such a payment
-- had already returned comes back as reinstated, with its movement tied
-- to the chargeback's ledger row: paid 100.00, refunded 20.00, charged
-- back 100.00 and reinstated 20.00 nets to 0.00, as the rule now books it.
UPDATE payments
SET chargeback_minor = paid_minor,
    reinstated_minor = least(refunded_minor, paid_minor)
WHERE paid_minor > 0 AND reversed;

ALTER TABLE orders
    ADD COLUMN reinstated_minor BIGINT NOT NULL DEFAULT 0 CHECK (reinstated_minor >= 0);

ALTER TABLE money_movements DROP CONSTRAINT money_movements_kind_check;
ALTER TABLE money_movements ADD CONSTRAINT money_movements_kind_check
    CHECK (kind IN ('payment', 'refund', 'reversal', 'chargeback', 'vat', 'vat_refund',
                    'commission', 'commission_refund', 'chargeback_reversal'));

INSERT INTO money_movements (order_id, notification_id, processor_ref, kind, amount_minor,
                             currency, created_at)
SELECT p.order_id, m.notification_id, p.processor_ref, 'chargeback_reversal',
       p.reinstated_minor, m.currency, m.created_at
FROM payments AS p
JOIN LATERAL (
    SELECT notification_id, currency, created_at FROM money_movements
    WHERE order_id = p.order_id AND processor_ref = p.processor_ref
      AND kind = 'chargeback' AND notification_id IS NOT NULL
    ORDER BY id LIMIT 1) AS m ON true
WHERE p.reinstated_minor > 0;

UPDATE orders AS o
SET reinstated_minor = s.reinstated
FROM (SELECT order_id, sum(reinstated_minor) AS reinstated FROM payments
      GROUP BY order_id HAVING sum(reinstated_minor) > 0) AS s
WHERE o.id = s.order_id;

-- A settlement line that credits back a chargeback no notice reinstated
-- opens `settlement_reinstatement`; `book_reinstatement` books it.
ALTER TABLE review_resolutions DROP CONSTRAINT review_resolutions_action_check;
ALTER TABLE review_resolutions ADD CONSTRAINT review_resolutions_action_check
    CHECK (action IN ('accept_as_is', 'apply_repeat', 'mark_refunded_outside', 'link_order',
                      'write_off', 'dismiss', 'book_reinstatement', 'closed_by_system', 'note'));
