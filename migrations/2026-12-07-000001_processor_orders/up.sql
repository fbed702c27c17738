-- Orders keyed by the processor (order-source = processor or both): a
-- hosted-cart order or a renewal names no merchant reference, so the
-- daemon makes the order from the processor's notices, with REFNO as its
-- reference (docs/protocol.md, "Hosted-cart orders").
ALTER TABLE orders
    ADD COLUMN origin TEXT NOT NULL DEFAULT 'merchant'
        CHECK (origin IN ('merchant', 'processor')),
    -- A processor order's merchant reference, when a notice named one
    -- (order-source = processor); merchant orders keep theirs in order_ref.
    ADD COLUMN merchant_ref TEXT CHECK (length(merchant_ref) BETWEEN 1 AND 100);
CREATE INDEX orders_merchant_ref_idx ON orders (merchant_ref) WHERE merchant_ref IS NOT NULL;
CREATE INDEX orders_origin_idx ON orders (origin) WHERE origin <> 'merchant';
