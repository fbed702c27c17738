-- Money dated when it moved, and books that close (issue 22, items 1-2).
--
-- A money movement keeps three times:
--   created_at  when the daemon recorded it (its ledger row's transaction);
--   occurred_at when the money moved, by the processor's own dates (the
--               notice's PAYMENTDATE / COMPLETE_DATE / IPN_DATE, read in
--               `processor-timezone`; domain::event_time), never later than
--               created_at: money cannot move after the daemon heard of it;
--   booked_at   the date the books carry it: occurred_at, unless that falls
--               in a period closed when it was recorded; then the first
--               instant of the first open period ("late for a closed
--               period": booked_at > occurred_at).
-- `report --by event` and `export journal` read booked_at, so a closed
-- period's figures never change. Both are set here, by a trigger, so that
-- every path that writes a movement (a batch, a person's action) obeys the
-- close without having to remember it.

-- The closes of the books, append-only: the latest row says through which
-- day the books are closed. A reopen is a row too, with its reason.
CREATE TABLE books_closes (
    id          BIGSERIAL PRIMARY KEY,
    action      TEXT NOT NULL CHECK (action IN ('close', 'reopen')),
    -- The last day closed, as the person gave it (in time_zone); NULL when
    -- a reopen leaves nothing closed.
    through     DATE,
    -- The first instant of the first open period; NULL when nothing is
    -- closed.
    open_from   TIMESTAMPTZ CHECK ((through IS NULL) = (open_from IS NULL)),
    time_zone   TEXT NOT NULL CHECK (length(time_zone) BETWEEN 1 AND 64),
    done_by     TEXT NOT NULL CHECK (length(done_by) BETWEEN 1 AND 100),
    note        TEXT NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE FUNCTION books_closes_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'books_closes is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER books_closes_no_update BEFORE UPDATE OR DELETE ON books_closes
    FOR EACH ROW EXECUTE FUNCTION books_closes_append_only();
CREATE TRIGGER books_closes_no_truncate BEFORE TRUNCATE ON books_closes
    FOR EACH STATEMENT EXECUTE FUNCTION books_closes_append_only();

-- Where the open books begin now.
CREATE FUNCTION books_open_from() RETURNS timestamptz AS $$
    SELECT coalesce((SELECT open_from FROM books_closes ORDER BY id DESC LIMIT 1),
                    '-infinity'::timestamptz)
$$ LANGUAGE sql STABLE;

ALTER TABLE money_movements ADD COLUMN occurred_at TIMESTAMPTZ, ADD COLUMN booked_at TIMESTAMPTZ;
-- Movements recorded before this version are dated when they were
-- recorded: that is what the books showed until now.
ALTER TABLE money_movements DISABLE TRIGGER money_movements_no_update;
UPDATE money_movements SET occurred_at = created_at, booked_at = created_at;
ALTER TABLE money_movements ENABLE TRIGGER money_movements_no_update;
ALTER TABLE money_movements
    ALTER COLUMN occurred_at SET NOT NULL,
    ALTER COLUMN booked_at SET NOT NULL;

CREATE FUNCTION money_movements_dated() RETURNS trigger AS $$
BEGIN
    NEW.occurred_at := least(coalesce(NEW.occurred_at, NEW.created_at, now()),
                             coalesce(NEW.created_at, now()));
    NEW.booked_at := greatest(NEW.occurred_at, books_open_from());
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER money_movements_dated BEFORE INSERT ON money_movements
    FOR EACH ROW EXECUTE FUNCTION money_movements_dated();

DROP INDEX money_movements_time_idx;
CREATE INDEX money_movements_booked_idx ON money_movements (booked_at);

-- A settlement line's fee is dated with its sale (or by the line when it
-- has none), but never into a period closed when the line was imported.
ALTER TABLE settlement_lines ADD COLUMN books_open_from TIMESTAMPTZ;
UPDATE settlement_lines SET books_open_from = '-infinity';
ALTER TABLE settlement_lines ALTER COLUMN books_open_from SET NOT NULL;

CREATE FUNCTION settlement_lines_books_open_from() RETURNS trigger AS $$
BEGIN
    NEW.books_open_from := books_open_from();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER settlement_lines_books_open_from BEFORE INSERT ON settlement_lines
    FOR EACH ROW EXECUTE FUNCTION settlement_lines_books_open_from();
