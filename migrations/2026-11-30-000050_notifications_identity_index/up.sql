-- Every batch looks up the earlier deliveries of its identities (all of
-- them, repeats included: store::batch::load_history), which the partial
-- unique index notifications_first_of_identity (first deliveries only)
-- cannot answer: without this index each batch scanned the whole table,
-- and the worker slowed down as the table grew.
CREATE INDEX notifications_identity_idx ON notifications (identity);
