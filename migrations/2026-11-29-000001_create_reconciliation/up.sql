-- The reconciliation schema. Money is stored as integer minor units
-- (BIGINT) next to its ISO 4217 currency; never as floating point.
-- No table holds personal data or raw notification bodies.

CREATE TABLE orders (
    id              BIGSERIAL PRIMARY KEY,
    -- The merchant's order reference; REFNOEXT in notifications.
    order_ref       TEXT NOT NULL UNIQUE CHECK (length(order_ref) BETWEEN 1 AND 100),
    expected_minor  BIGINT NOT NULL CHECK (expected_minor >= 0),
    currency        TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN (
                        'pending', 'authorized', 'paid', 'partially_refunded', 'refunded',
                        'canceled', 'reversed', 'suspect', 'mismatch')),
    -- The processor's reference (REFNO) of the payment, once known.
    processor_ref   TEXT,
    paid_minor      BIGINT NOT NULL DEFAULT 0 CHECK (paid_minor >= 0),
    refunded_minor  BIGINT NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    -- Accumulated facts: they only ever turn true (see domain::reconcile).
    authorized      BOOLEAN NOT NULL DEFAULT FALSE,
    reversed        BOOLEAN NOT NULL DEFAULT FALSE,
    canceled        BOOLEAN NOT NULL DEFAULT FALSE,
    suspect         BOOLEAN NOT NULL DEFAULT FALSE,
    mismatch        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Bumped by every applied change; lets readers detect concurrent updates.
    version         BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX orders_status_idx ON orders (status);
CREATE INDEX orders_processor_ref_idx ON orders (processor_ref);

CREATE TABLE notifications (
    id                  BIGSERIAL PRIMARY KEY,
    -- SHA-256 of the raw body: an identical body is the same notification.
    body_sha256         TEXT NOT NULL UNIQUE CHECK (body_sha256 ~ '^[0-9a-f]{64}$'),
    processor_ref       TEXT,
    order_ref           TEXT,
    order_status        TEXT,
    amount_minor        BIGINT,
    currency            TEXT,
    payment_method      TEXT,
    customer_pseudonym  TEXT,
    test_order          BOOLEAN NOT NULL DEFAULT FALSE,
    ipn_date            TIMESTAMP,
    key_id              TEXT,
    algorithm           TEXT,
    received_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    processed_at        TIMESTAMPTZ,
    outcome             TEXT NOT NULL CHECK (outcome IN (
                            'applied', 'ignored', 'mismatch', 'order_not_found',
                            'invalid_signature', 'malformed')),
    -- Short machine reason (for example `mismatch` or `missing_field:REFNOEXT`), never a value.
    reason              TEXT
);
CREATE INDEX notifications_order_ref_idx ON notifications (order_ref);
CREATE INDEX notifications_processor_ref_idx ON notifications (processor_ref);
CREATE INDEX notifications_outcome_idx ON notifications (outcome);
CREATE INDEX notifications_pseudonym_idx ON notifications (customer_pseudonym);

-- Append-only ledger: one row per notification applied to or ignored for an order.
CREATE TABLE order_events (
    id               BIGSERIAL PRIMARY KEY,
    order_id         BIGINT NOT NULL REFERENCES orders (id),
    notification_id  BIGINT NOT NULL REFERENCES notifications (id),
    order_status     TEXT NOT NULL,
    effect           TEXT NOT NULL CHECK (effect IN ('applied', 'ignored')),
    old_status       TEXT NOT NULL,
    new_status       TEXT NOT NULL,
    amount_minor     BIGINT NOT NULL,
    currency         TEXT NOT NULL,
    reason           TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (order_id, notification_id)
);
CREATE INDEX order_events_order_idx ON order_events (order_id, id);

CREATE FUNCTION order_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'order_events is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER order_events_no_update BEFORE UPDATE OR DELETE ON order_events
    FOR EACH ROW EXECUTE FUNCTION order_events_append_only();

-- Exceptions for people to look at.
CREATE TABLE review_items (
    id               BIGSERIAL PRIMARY KEY,
    kind             TEXT NOT NULL,
    order_ref        TEXT,
    notification_id  BIGINT REFERENCES notifications (id),
    -- Amounts, references, statuses and field names only: never personal data.
    details          TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    resolution_note  TEXT,
    resolved_by      TEXT,
    resolved_at      TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE INDEX review_items_open_idx ON review_items (status, kind);
CREATE INDEX review_items_order_idx ON review_items (order_ref);
-- A notification opens at most one item of each kind, however often it is processed.
CREATE UNIQUE INDEX review_items_once ON review_items (kind, notification_id)
    WHERE notification_id IS NOT NULL;
