-- Subscriptions (issue 21): each line item of an order that names a
-- licence (IPN_LICENSE_REF[i]) is one row, keyed by the licence and the
-- order's REFNO. A renewal is a new order on the same licence, so a
-- subscription is the set of its rows (domain::subscription folds them).
-- No personal data: references, product code, licence type, dates.
CREATE TABLE subscription_orders (
    licence_ref         TEXT NOT NULL CHECK (licence_ref ~ '^[A-Za-z0-9]{1,32}$'),
    processor_ref       TEXT NOT NULL,
    product_code        TEXT CHECK (length(product_code) <= 64),
    licence_type        TEXT CHECK (length(licence_type) <= 64),
    starts_at           TIMESTAMP,
    -- NULL for a lifetime licence (or when not sent).
    expires_at          TIMESTAMP,
    lifetime            BOOLEAN NOT NULL DEFAULT FALSE,
    -- ORIGINAL_REFNOEXT[i]: the first order's merchant reference.
    original_order_ref  TEXT CHECK (length(original_order_ref) <= 100),
    -- A payment notice of the order was applied (only ever turns true).
    paid                BOOLEAN NOT NULL DEFAULT FALSE,
    first_seen_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (licence_ref, processor_ref)
);
CREATE INDEX subscription_orders_processor_ref_idx ON subscription_orders (processor_ref);
