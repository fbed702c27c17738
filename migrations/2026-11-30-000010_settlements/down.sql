DROP INDEX IF EXISTS review_items_one_open_sweep_item;
DROP TABLE IF EXISTS settlement_payouts;
DROP TABLE IF EXISTS settlement_lines;
DROP FUNCTION IF EXISTS settlement_append_only();
