-- Money movements: what each ledger row did to the money, per payment.
--
-- A ledger row (order_events) records a notification and the order's
-- states before and after; the money it moved is the change in the
-- payment's counted figures (domain::journal::movements): a payment
-- captured, refunds that count, a chargeback. A row may move nothing (a
-- re-sent COMPLETE, an authorization) or several things at once (a payment
-- that arrives after its refund was held). Written in the same transaction
-- as the ledger row, append-only like it, so `report --by event` and
-- `export journal` read what happened when it happened, whatever later
-- versions decide.
CREATE TABLE money_movements (
    id               BIGSERIAL PRIMARY KEY,
    order_id         BIGINT NOT NULL,
    notification_id  BIGINT NOT NULL,
    -- The payment moved (REFNO).
    processor_ref    TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('payment', 'refund', 'reversal', 'chargeback')),
    amount_minor     BIGINT NOT NULL CHECK (amount_minor > 0),
    currency         TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- The time of its ledger row (the same transaction's now()).
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (order_id, notification_id) REFERENCES order_events (order_id, notification_id)
);
CREATE INDEX money_movements_time_idx ON money_movements (created_at);
CREATE INDEX money_movements_order_idx ON money_movements (order_id);

CREATE FUNCTION money_movements_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'money_movements is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER money_movements_no_update BEFORE UPDATE OR DELETE ON money_movements
    FOR EACH ROW EXECUTE FUNCTION money_movements_append_only();
CREATE TRIGGER money_movements_no_truncate BEFORE TRUNCATE ON money_movements
    FOR EACH STATEMENT EXECUTE FUNCTION money_movements_append_only();

-- Books kept before this migration: one movement per figure of each
-- payment (its payment, its refunds together, its chargeback), dated by
-- the ledger row that recorded it (the first applied payment row of its
-- REFNO; the last applied refund or reversal row, or the payment row when
-- that came later). An order's own rows are the fallback, so every figure
-- of the payments table is carried over.
INSERT INTO money_movements (order_id, notification_id, processor_ref, kind, amount_minor,
                             currency, created_at)
SELECT p.order_id, e.notification_id, p.processor_ref, 'payment', p.paid_minor, o.currency,
       e.created_at
FROM payments AS p
JOIN orders AS o ON o.id = p.order_id
CROSS JOIN LATERAL (
    SELECT ev.notification_id, ev.created_at
    FROM order_events AS ev JOIN notifications AS n ON n.id = ev.notification_id
    WHERE ev.order_id = p.order_id
    ORDER BY (ev.effect = 'applied' AND n.processor_ref = p.processor_ref
              AND ev.order_status IN ('COMPLETE', 'PAYMENT_RECEIVED', 'AUTHRECEIVED')) DESC,
             ev.id ASC
    LIMIT 1
) AS e
WHERE p.paid_minor > 0;

INSERT INTO money_movements (order_id, notification_id, processor_ref, kind, amount_minor,
                             currency, created_at)
SELECT p.order_id, e.notification_id, p.processor_ref, m.kind, m.amount, o.currency, e.created_at
FROM payments AS p
JOIN orders AS o ON o.id = p.order_id
CROSS JOIN LATERAL (VALUES
    ('refund', 'REFUND', p.refunded_minor),
    ('chargeback', 'REVERSED', CASE WHEN p.reversed THEN p.paid_minor ELSE 0 END)
) AS m (kind, status, amount)
CROSS JOIN LATERAL (
    SELECT ev.notification_id, ev.created_at
    FROM order_events AS ev JOIN notifications AS n ON n.id = ev.notification_id
    WHERE ev.order_id = p.order_id
    ORDER BY (ev.effect = 'applied' AND n.processor_ref = p.processor_ref
              AND ev.order_status IN (m.status, 'COMPLETE', 'PAYMENT_RECEIVED', 'AUTHRECEIVED'))
             DESC,
             ev.id DESC
    LIMIT 1
) AS e
WHERE p.paid_minor > 0 AND m.amount > 0;
