-- Settlement: the processor's payout export, line by line, and the bank
-- transfers (payouts) of its batches (domain::settlement, store::settlement).
--
-- A line is kept as imported, with how it compared with the ledger at
-- import (matched, differs, unknown, other): append-only like the ledger,
-- so a settlement report is the same whenever it is printed. Re-importing
-- a file changes nothing: a line is identified in its batch by the
-- SHA-256 of its values and which identical copy it is (line_key,
-- occurrence).
CREATE TABLE settlement_lines (
    id              BIGSERIAL PRIMARY KEY,
    batch_id        TEXT NOT NULL CHECK (length(batch_id) BETWEEN 1 AND 100),
    line_key        TEXT NOT NULL CHECK (line_key ~ '^[0-9a-f]{64}$'),
    occurrence      INTEGER NOT NULL CHECK (occurrence >= 1),
    -- REFNO and the merchant's order reference, as the line gives them.
    processor_ref   TEXT CHECK (length(processor_ref) BETWEEN 1 AND 100),
    order_ref       TEXT CHECK (length(order_ref) BETWEEN 1 AND 100),
    kind            TEXT NOT NULL CHECK (kind IN (
                        'sale', 'refund', 'chargeback', 'reversal', 'fee', 'adjustment')),
    gross_minor     BIGINT NOT NULL,
    fee_minor       BIGINT NOT NULL CHECK (fee_minor >= 0),
    net_minor       BIGINT NOT NULL,
    currency        TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    settled_at      TIMESTAMPTZ NOT NULL,
    -- How it compared with the ledger when it was imported.
    status          TEXT NOT NULL CHECK (status IN ('matched', 'differs', 'unknown', 'other')),
    matched_by      TEXT CHECK (matched_by IN ('processor_ref', 'order_ref')),
    payment_id      BIGINT REFERENCES payments (id),
    order_id        BIGINT REFERENCES orders (id),
    -- The ledger's amount it was compared with (minor units).
    expected_minor  BIGINT,
    -- The review item it opened (differs, unknown).
    review_item_id  BIGINT REFERENCES review_items (id),
    imported_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (batch_id, line_key, occurrence),
    CHECK (net_minor = gross_minor - fee_minor),
    CHECK ((status IN ('matched', 'differs')) = (payment_id IS NOT NULL))
);
CREATE INDEX settlement_lines_batch_idx ON settlement_lines (batch_id, currency);
CREATE INDEX settlement_lines_payment_idx ON settlement_lines (payment_id);
CREATE INDEX settlement_lines_settled_idx ON settlement_lines (settled_at);
CREATE INDEX settlement_lines_order_idx ON settlement_lines (order_id);

CREATE FUNCTION settlement_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER settlement_lines_no_update BEFORE UPDATE OR DELETE ON settlement_lines
    FOR EACH ROW EXECUTE FUNCTION settlement_append_only();
CREATE TRIGGER settlement_lines_no_truncate BEFORE TRUNCATE ON settlement_lines
    FOR EACH STATEMENT EXECUTE FUNCTION settlement_append_only();

-- One bank transfer per batch and currency, and the sum of the batch's net
-- lines it was checked against when imported.
CREATE TABLE settlement_payouts (
    id               BIGSERIAL PRIMARY KEY,
    batch_id         TEXT NOT NULL CHECK (length(batch_id) BETWEEN 1 AND 100),
    currency         TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    paid_on          DATE NOT NULL,
    amount_minor     BIGINT NOT NULL,
    lines_net_minor  BIGINT NOT NULL,
    review_item_id   BIGINT REFERENCES review_items (id),
    imported_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (batch_id, currency)
);
CREATE TRIGGER settlement_payouts_no_update BEFORE UPDATE OR DELETE ON settlement_payouts
    FOR EACH ROW EXECUTE FUNCTION settlement_append_only();
CREATE TRIGGER settlement_payouts_no_truncate BEFORE TRUNCATE ON settlement_payouts
    FOR EACH STATEMENT EXECUTE FUNCTION settlement_append_only();

-- The sweep raises one open item per cause (an order, or an order's
-- payment), whatever instances run it at the same moment.
CREATE UNIQUE INDEX review_items_one_open_sweep_item
    ON review_items (kind, order_ref, (coalesce(processor_ref, '')))
    WHERE status = 'open' AND kind IN ('stale_order', 'unsettled_payment', 'refund_not_debited');
