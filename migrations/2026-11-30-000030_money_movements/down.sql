DROP TABLE money_movements;
DROP FUNCTION money_movements_append_only();
