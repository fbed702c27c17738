//! Diesel's view of the tables in `migrations/` (written by hand, kept in
//! step with the SQL; the store tests fail if the two disagree).

diesel::table! {
    orders (id) {
        id -> Int8,
        order_ref -> Text,
        expected_minor -> Int8,
        currency -> Text,
        status -> Text,
        processor_ref -> Nullable<Text>,
        paid_minor -> Int8,
        refunded_minor -> Int8,
        authorized -> Bool,
        reversed -> Bool,
        canceled -> Bool,
        suspect -> Bool,
        mismatch -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        version -> Int8,
        charged_back_minor -> Int8,
        origin -> Text,
        merchant_ref -> Nullable<Text>,
        expected_stated -> Bool,
        reinstated_minor -> Int8,
    }
}

diesel::table! {
    payments (id) {
        id -> Int8,
        order_id -> Int8,
        processor_ref -> Text,
        authorized -> Bool,
        paid_minor -> Int8,
        refunded_minor -> Int8,
        reversed -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        vat_minor -> Int8,
        commission_e8 -> Int8,
        commission_minor -> Int8,
        payable_minor -> Nullable<Int8>,
        payout_currency -> Nullable<Text>,
        fx_rate -> Nullable<Text>,
        fx_markup -> Nullable<Text>,
        refunded_vat_minor -> Int8,
        refunded_commission_e8 -> Int8,
        refunded_commission_minor -> Int8,
        refunded_payable_minor -> Nullable<Int8>,
        refunded_payout_currency -> Nullable<Text>,
        charged_back_vat_minor -> Int8,
        charged_back_commission_e8 -> Int8,
        charged_back_commission_minor -> Int8,
        charged_back_payable_minor -> Nullable<Int8>,
        charged_back_payout_currency -> Nullable<Text>,
        dispute_opened -> Bool,
        dispute_won -> Bool,
        dispute_lost -> Bool,
        chargeback_minor -> Nullable<Int8>,
        reinstated_minor -> Int8,
    }
}

diesel::table! {
    notifications (id) {
        id -> Int8,
        body_sha256 -> Text,
        processor_ref -> Nullable<Text>,
        order_ref -> Nullable<Text>,
        order_status -> Nullable<Text>,
        amount_minor -> Nullable<Int8>,
        currency -> Nullable<Text>,
        payment_method -> Nullable<Text>,
        customer_pseudonym -> Nullable<Text>,
        test_order -> Bool,
        ipn_date -> Nullable<Timestamp>,
        key_id -> Nullable<Text>,
        algorithm -> Nullable<Text>,
        received_at -> Timestamptz,
        processed_at -> Nullable<Timestamptz>,
        outcome -> Text,
        reason -> Nullable<Text>,
        identity -> Nullable<Text>,
        repeat_of -> Nullable<Int8>,
        fraud_denied -> Bool,
        vat_minor -> Nullable<Int8>,
        commission_e8 -> Nullable<Int8>,
        payable_minor -> Nullable<Int8>,
        payout_currency -> Nullable<Text>,
        fx_rate -> Nullable<Text>,
        fx_markup -> Nullable<Text>,
        chargeback_resolution -> Nullable<Text>,
        chargeback_reason_code -> Nullable<Text>,
    }
}

diesel::table! {
    order_events (id) {
        id -> Int8,
        order_id -> Int8,
        /// Null for a person's action (then `resolution_id` is set).
        notification_id -> Nullable<Int8>,
        order_status -> Text,
        effect -> Text,
        old_status -> Text,
        new_status -> Text,
        amount_minor -> Int8,
        currency -> Text,
        reason -> Text,
        created_at -> Timestamptz,
        resolution_id -> Nullable<Int8>,
        /// Its place in its hash chain and its seal (set by the database;
        /// crate::audit).
        chain_seq -> Nullable<Int8>,
        chain_digest -> Nullable<Text>,
    }
}

diesel::table! {
    review_items (id) {
        id -> Int8,
        kind -> Text,
        order_ref -> Nullable<Text>,
        notification_id -> Nullable<Int8>,
        details -> Text,
        status -> Text,
        resolution_note -> Nullable<Text>,
        resolved_by -> Nullable<Text>,
        resolved_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        processor_ref -> Nullable<Text>,
    }
}

diesel::table! {
    money_movements (id) {
        id -> Int8,
        order_id -> Int8,
        /// Null for a person's action (then `resolution_id` is set).
        notification_id -> Nullable<Int8>,
        processor_ref -> Text,
        kind -> Text,
        amount_minor -> Int8,
        currency -> Text,
        created_at -> Timestamptz,
        resolution_id -> Nullable<Int8>,
        /// When the money moved, by the processor's dates.
        occurred_at -> Timestamptz,
        /// The date the books carry it (later than `occurred_at` when that
        /// fell in a period closed when it was recorded).
        booked_at -> Timestamptz,
        /// Its place in its hash chain and its seal (set by the database;
        /// crate::audit).
        chain_seq -> Nullable<Int8>,
        chain_digest -> Nullable<Text>,
    }
}

diesel::table! {
    review_resolutions (id) {
        id -> Int8,
        review_item_id -> Int8,
        kind -> Text,
        action -> Text,
        resolved_by -> Text,
        note -> Text,
        order_ref -> Nullable<Text>,
        notification_id -> Nullable<Int8>,
        amount_minor -> Nullable<Int8>,
        currency -> Nullable<Text>,
        group_of -> Nullable<Int8>,
        created_at -> Timestamptz,
        written_off_minor -> Nullable<Int8>,
        /// Its place in its hash chain and its seal (set by the database;
        /// crate::audit).
        chain_seq -> Nullable<Int8>,
        chain_digest -> Nullable<Text>,
    }
}

diesel::joinable!(order_events -> orders (order_id));
diesel::joinable!(money_movements -> orders (order_id));
diesel::joinable!(payments -> orders (order_id));
diesel::joinable!(order_events -> notifications (notification_id));
diesel::joinable!(review_items -> notifications (notification_id));
diesel::joinable!(review_resolutions -> review_items (review_item_id));
diesel::allow_tables_to_appear_in_same_query!(
    orders,
    payments,
    notifications,
    order_events,
    review_items,
    money_movements,
    review_resolutions
);

diesel::table! {
    settlement_lines (id) {
        id -> Int8,
        batch_id -> Text,
        line_key -> Text,
        occurrence -> Int4,
        processor_ref -> Nullable<Text>,
        order_ref -> Nullable<Text>,
        kind -> Text,
        gross_minor -> Int8,
        fee_minor -> Int8,
        net_minor -> Int8,
        currency -> Text,
        settled_at -> Timestamptz,
        status -> Text,
        matched_by -> Nullable<Text>,
        payment_id -> Nullable<Int8>,
        order_id -> Nullable<Int8>,
        expected_minor -> Nullable<Int8>,
        review_item_id -> Nullable<Int8>,
        imported_at -> Timestamptz,
        /// Where the open books began when the line was imported.
        books_open_from -> Timestamptz,
        /// The deductions the fee was summed from (JSON text), if several.
        fee_parts -> Nullable<Text>,
        /// Its place in its hash chain and its seal (set by the database;
        /// crate::audit).
        chain_seq -> Nullable<Int8>,
        chain_digest -> Nullable<Text>,
    }
}

diesel::table! {
    books_closes (id) {
        id -> Int8,
        action -> Text,
        through -> Nullable<Date>,
        open_from -> Nullable<Timestamptz>,
        time_zone -> Text,
        done_by -> Text,
        note -> Text,
        created_at -> Timestamptz,
        /// Its place in its hash chain and its seal (set by the database;
        /// crate::audit).
        chain_seq -> Nullable<Int8>,
        chain_digest -> Nullable<Text>,
    }
}

diesel::table! {
    settlement_payouts (id) {
        id -> Int8,
        batch_id -> Text,
        currency -> Text,
        paid_on -> Date,
        amount_minor -> Int8,
        lines_net_minor -> Int8,
        review_item_id -> Nullable<Int8>,
        imported_at -> Timestamptz,
        /// Where the open books began when the payout was imported.
        books_open_from -> Timestamptz,
        /// Its place in its hash chain and its seal (set by the database;
        /// crate::audit).
        chain_seq -> Nullable<Int8>,
        chain_digest -> Nullable<Text>,
    }
}
