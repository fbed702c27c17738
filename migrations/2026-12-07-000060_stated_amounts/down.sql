ALTER TABLE orders DROP COLUMN expected_stated;
