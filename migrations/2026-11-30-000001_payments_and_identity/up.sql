-- Payments per processor reference, notification identity, repeats, and
-- guards on the ledger (see docs/protocol.md §11 and docs/architecture.md).

-- One order may be paid more than once (a double charge), and refunds,
-- reversals and chargebacks apply to the payment with their REFNO. The
-- order row keeps the totals derived from its payments, for queries.
CREATE TABLE payments (
    id              BIGSERIAL PRIMARY KEY,
    order_id        BIGINT NOT NULL REFERENCES orders (id),
    -- The processor's reference (REFNO) of this payment.
    processor_ref   TEXT NOT NULL CHECK (length(processor_ref) BETWEEN 1 AND 20),
    -- Facts that only grow (domain::reconcile::PaymentFacts).
    authorized      BOOLEAN NOT NULL DEFAULT FALSE,
    paid_minor      BIGINT NOT NULL DEFAULT 0 CHECK (paid_minor >= 0),
    refunded_minor  BIGINT NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    reversed        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (order_id, processor_ref)
);
CREATE INDEX payments_processor_ref_idx ON payments (processor_ref);

-- What earlier versions knew as one payment per order becomes that order's
-- payment under its processor reference.
INSERT INTO payments (order_id, processor_ref, authorized, paid_minor, refunded_minor, reversed,
                      created_at, updated_at)
SELECT id, processor_ref, authorized, paid_minor, refunded_minor, reversed, created_at, updated_at
FROM orders
WHERE processor_ref IS NOT NULL AND length(processor_ref) BETWEEN 1 AND 20;

-- Charged back: paid, then reversed (a chargeback), summed over payments.
ALTER TABLE orders ADD COLUMN charged_back_minor BIGINT NOT NULL DEFAULT 0
    CHECK (charged_back_minor >= 0);
UPDATE orders SET charged_back_minor = paid_minor WHERE reversed AND paid_minor > 0;

-- A notification's identity: the SHA-256 of its signed values in wire
-- order, without the signature fields and the per-delivery IPN_DATE. The
-- first delivery of an identity is the one that counts; later deliveries
-- (processor retries, copies for another URL, re-encoded copies) are
-- recorded as repeats of it and change nothing.
ALTER TABLE notifications
    ADD COLUMN identity TEXT CHECK (identity ~ '^[0-9a-f]{64}$'),
    ADD COLUMN repeat_of BIGINT REFERENCES notifications (id),
    ADD COLUMN fraud_denied BOOLEAN NOT NULL DEFAULT FALSE,
    DROP CONSTRAINT notifications_outcome_check,
    ADD CONSTRAINT notifications_outcome_check CHECK (outcome IN (
        'applied', 'duplicate', 'ignored', 'mismatch', 'order_not_found',
        'invalid_signature', 'malformed'));
CREATE UNIQUE INDEX notifications_first_of_identity
    ON notifications (identity) WHERE repeat_of IS NULL AND identity IS NOT NULL;
CREATE INDEX notifications_repeat_of_idx ON notifications (repeat_of);

-- Review items name the payment they concern, so the system can close
-- them when they stop being true.
ALTER TABLE review_items ADD COLUMN processor_ref TEXT;
CREATE INDEX review_items_open_order_idx ON review_items (order_ref, kind) WHERE status = 'open';

-- The ledger is append-only: TRUNCATE is refused like UPDATE and DELETE.
CREATE TRIGGER order_events_no_truncate BEFORE TRUNCATE ON order_events
    FOR EACH STATEMENT EXECUTE FUNCTION order_events_append_only();
