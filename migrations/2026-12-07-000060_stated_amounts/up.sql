-- A processor order totals what its notices say (the largest amount any
-- carried), unless the shop stated what it expects: `orders import` with a
-- `processor_ref` column (docs/operations.md, "Where orders come from").
-- Then the notices are held against the shop's amount, as a merchant
-- order's are, and never raise it.
ALTER TABLE orders
    ADD COLUMN expected_stated BOOLEAN NOT NULL DEFAULT false;
