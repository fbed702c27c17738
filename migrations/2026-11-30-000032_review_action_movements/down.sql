ALTER TABLE money_movements
    DROP CONSTRAINT money_movements_resolution_fkey,
    DROP CONSTRAINT money_movements_one_cause,
    DROP COLUMN resolution_id;
-- Movements of people's actions have no notification: NOT NULL cannot come
-- back while they exist, which is the point of a ledger.
ALTER TABLE money_movements ALTER COLUMN notification_id SET NOT NULL;
