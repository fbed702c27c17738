DROP INDEX orders_origin_idx;
DROP INDEX orders_merchant_ref_idx;
ALTER TABLE orders DROP COLUMN merchant_ref, DROP COLUMN origin;
