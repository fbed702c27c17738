-- A payout, like a settlement line (2026-12-08-000010), is never booked in
-- a period that was closed when its file was imported: the journal dates
-- it at the later of its day and where the open books began then.
ALTER TABLE settlement_payouts ADD COLUMN books_open_from TIMESTAMPTZ;
UPDATE settlement_payouts SET books_open_from = '-infinity';
ALTER TABLE settlement_payouts ALTER COLUMN books_open_from SET NOT NULL;

CREATE TRIGGER settlement_payouts_books_open_from BEFORE INSERT ON settlement_payouts
    FOR EACH ROW EXECUTE FUNCTION settlement_lines_books_open_from();
