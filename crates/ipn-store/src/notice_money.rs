//! The money a notice carries beside its gross, as the payments table
//! keeps it (`vat_minor`, `commission_e8`, the payout side, what the
//! refunds gave back and what the chargeback gave back; see
//! [`crate::domain::notice_money`] and the migrations
//! `2026-12-07-000010_notice_money` and `2026-12-07-000050_notice_money_kept`):
//! read into a payment's facts and written back with them; and as the
//! notifications table keeps it, so that a notification applied later by
//! a person is rebuilt with its money ([`NotificationMoney`]).

use diesel::prelude::*;
use diesel::sql_types::{Array, Int8, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::StoreError;
use super::schema::{notifications, payments};
use crate::domain::notice_money::{Commission, NoticeMoney, Rate, round_e8_to_minor};
use crate::domain::reconcile::PaymentFacts;
use crate::domain::{Currencies, Currency, Money, OrderFacts};

/// The notice-money columns of a payment row.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = payments)]
pub(super) struct PaymentMoneyRow {
    pub(super) vat_minor: i64,
    pub(super) commission_e8: i64,
    pub(super) payable_minor: Option<i64>,
    pub(super) payout_currency: Option<String>,
    pub(super) fx_rate: Option<String>,
    pub(super) fx_markup: Option<String>,
    pub(super) refunded_vat_minor: i64,
    pub(super) refunded_commission_e8: i64,
    pub(super) refunded_payable_minor: Option<i64>,
    pub(super) refunded_payout_currency: Option<String>,
    pub(super) charged_back_vat_minor: i64,
    pub(super) charged_back_commission_e8: i64,
    pub(super) charged_back_payable_minor: Option<i64>,
    pub(super) charged_back_payout_currency: Option<String>,
}

/// The columns of [`PaymentMoneyRow`] for a hand-written `SELECT` of the
/// payments table aliased `p`.
pub(super) const SELECT_COLUMNS: &str = "p.vat_minor, p.commission_e8, p.payable_minor, \
     p.payout_currency, p.fx_rate, p.fx_markup, p.refunded_vat_minor, \
     p.refunded_commission_e8, p.refunded_payable_minor, p.refunded_payout_currency, \
     p.charged_back_vat_minor, p.charged_back_commission_e8, p.charged_back_payable_minor, \
     p.charged_back_payout_currency";

impl PaymentMoneyRow {
    /// Fills the money facts of `facts` from the row, currencies read with
    /// `currencies` (the store's table).
    pub(super) fn fill(
        self,
        facts: &mut PaymentFacts,
        currencies: &Currencies,
    ) -> Result<(), StoreError> {
        let money = |minor: Option<i64>, code: Option<String>| -> Result<_, StoreError> {
            match (minor, code) {
                (Some(minor), Some(code)) => {
                    let currency = currencies
                        .currency(&code)
                        .map_err(|err| StoreError::Invalid(format!("payout currency: {err}")))?;
                    Ok(Some(Money::from_minor(minor, currency)))
                }
                _ => Ok(None),
            }
        };
        let rate = |text: Option<String>| -> Result<_, StoreError> {
            text.map(|t| {
                Rate::parse(&t).map_err(|err| StoreError::Invalid(format!("stored rate: {err}")))
            })
            .transpose()
        };
        facts.vat = self.vat_minor;
        facts.commission_e8 = self.commission_e8;
        facts.payable = money(self.payable_minor, self.payout_currency)?;
        facts.fx_rate = rate(self.fx_rate)?;
        facts.fx_markup = rate(self.fx_markup)?;
        facts.refunded_vat = self.refunded_vat_minor;
        facts.refunded_commission_e8 = self.refunded_commission_e8;
        facts.refunded_payable = money(self.refunded_payable_minor, self.refunded_payout_currency)?;
        facts.charged_back_vat = self.charged_back_vat_minor;
        facts.charged_back_commission_e8 = self.charged_back_commission_e8;
        facts.charged_back_payable = money(
            self.charged_back_payable_minor,
            self.charged_back_payout_currency,
        )?;
        Ok(())
    }
}

/// The statement that writes the money facts of the payments that
/// changed (`(order id, before, after)` of each changed order), after the
/// statement that upserted their rows; `None` when no payment's money
/// changed.
pub(super) fn write_payment_money<'a>(
    conn: &'a AsyncPgConnection,
    changed: &[&(i64, OrderFacts, OrderFacts)],
) -> Option<futures::future::BoxFuture<'a, QueryResult<usize>>> {
    let mut order_ids = Vec::new();
    let mut refs = Vec::new();
    let mut vat = Vec::new();
    let mut commission_e8 = Vec::new();
    let mut commission_minor = Vec::new();
    let mut payable: Vec<Option<i64>> = Vec::new();
    let mut payout_currency: Vec<Option<String>> = Vec::new();
    let mut fx_rate: Vec<Option<String>> = Vec::new();
    let mut fx_markup: Vec<Option<String>> = Vec::new();
    let mut refunded_vat = Vec::new();
    let mut refunded_commission_e8 = Vec::new();
    let mut refunded_commission_minor = Vec::new();
    let mut refunded_payable: Vec<Option<i64>> = Vec::new();
    let mut refunded_payout_currency: Vec<Option<String>> = Vec::new();
    let mut charged_back_vat = Vec::new();
    let mut charged_back_commission_e8 = Vec::new();
    let mut charged_back_commission_minor = Vec::new();
    let mut charged_back_payable: Vec<Option<i64>> = Vec::new();
    let mut charged_back_payout_currency: Vec<Option<String>> = Vec::new();
    for (order_id, before, after) in changed {
        let exponent = after.expected.currency().exponent();
        for (processor_ref, p) in &after.payments {
            let was = before.payments.get(processor_ref);
            let same = was.is_some_and(|w| {
                w.vat == p.vat
                    && w.commission_e8 == p.commission_e8
                    && w.payable == p.payable
                    && w.fx_rate == p.fx_rate
                    && w.fx_markup == p.fx_markup
                    && w.refunded_vat == p.refunded_vat
                    && w.refunded_commission_e8 == p.refunded_commission_e8
                    && w.refunded_payable == p.refunded_payable
                    && w.charged_back_vat == p.charged_back_vat
                    && w.charged_back_commission_e8 == p.charged_back_commission_e8
                    && w.charged_back_payable == p.charged_back_payable
            });
            let empty = p.vat == 0
                && p.commission_e8 == 0
                && p.payable.is_none()
                && p.fx_rate.is_none()
                && p.fx_markup.is_none()
                && p.refunded_vat == 0
                && p.refunded_commission_e8 == 0
                && p.refunded_payable.is_none()
                && p.charged_back_vat == 0
                && p.charged_back_commission_e8 == 0
                && p.charged_back_payable.is_none();
            if same || (was.is_none() && empty) {
                continue;
            }
            order_ids.push(*order_id);
            refs.push(processor_ref.clone());
            vat.push(p.vat);
            commission_e8.push(p.commission_e8);
            commission_minor.push(round_e8_to_minor(p.commission_e8, exponent));
            payable.push(p.payable.map(|m| m.minor_units()));
            payout_currency.push(p.payable.map(|m| m.currency().as_str().to_owned()));
            fx_rate.push(p.fx_rate.as_ref().map(|r| r.as_str().to_owned()));
            fx_markup.push(p.fx_markup.as_ref().map(|r| r.as_str().to_owned()));
            refunded_vat.push(p.refunded_vat);
            refunded_commission_e8.push(p.refunded_commission_e8);
            refunded_commission_minor.push(round_e8_to_minor(p.refunded_commission_e8, exponent));
            refunded_payable.push(p.refunded_payable.map(|m| m.minor_units()));
            refunded_payout_currency
                .push(p.refunded_payable.map(|m| m.currency().as_str().to_owned()));
            charged_back_vat.push(p.charged_back_vat);
            charged_back_commission_e8.push(p.charged_back_commission_e8);
            charged_back_commission_minor
                .push(round_e8_to_minor(p.charged_back_commission_e8, exponent));
            charged_back_payable.push(p.charged_back_payable.map(|m| m.minor_units()));
            charged_back_payout_currency.push(
                p.charged_back_payable
                    .map(|m| m.currency().as_str().to_owned()),
            );
        }
    }
    if order_ids.is_empty() {
        return None;
    }
    Some(Box::pin(
        diesel::sql_query(
            "UPDATE payments AS p SET vat_minor = v.vat, commission_e8 = v.commission_e8, \
                 commission_minor = v.commission_minor, payable_minor = v.payable, \
                 payout_currency = v.payout_currency, fx_rate = v.fx_rate, \
                 fx_markup = v.fx_markup, refunded_vat_minor = v.refunded_vat, \
                 refunded_commission_e8 = v.refunded_commission_e8, \
                 refunded_commission_minor = v.refunded_commission_minor, \
                 refunded_payable_minor = v.refunded_payable, \
                 refunded_payout_currency = v.refunded_payout_currency, \
                 charged_back_vat_minor = v.charged_back_vat, \
                 charged_back_commission_e8 = v.charged_back_commission_e8, \
                 charged_back_commission_minor = v.charged_back_commission_minor, \
                 charged_back_payable_minor = v.charged_back_payable, \
                 charged_back_payout_currency = v.charged_back_payout_currency \
             FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::int8[], \
                         $6::int8[], $7::text[], $8::text[], $9::text[], $10::int8[], \
                         $11::int8[], $12::int8[], $13::int8[], $14::text[], $15::int8[], \
                         $16::int8[], $17::int8[], $18::int8[], $19::text[]) \
                  AS v(order_id, processor_ref, vat, commission_e8, commission_minor, payable, \
                       payout_currency, fx_rate, fx_markup, refunded_vat, \
                       refunded_commission_e8, refunded_commission_minor, refunded_payable, \
                       refunded_payout_currency, charged_back_vat, charged_back_commission_e8, \
                       charged_back_commission_minor, charged_back_payable, \
                       charged_back_payout_currency) \
             WHERE p.order_id = v.order_id AND p.processor_ref = v.processor_ref \
               AND p.order_id = ANY($1)",
        )
        .bind::<Array<Int8>, _>(order_ids)
        .bind::<Array<Text>, _>(refs)
        .bind::<Array<Int8>, _>(vat)
        .bind::<Array<Int8>, _>(commission_e8)
        .bind::<Array<Int8>, _>(commission_minor)
        .bind::<Array<Nullable<Int8>>, _>(payable)
        .bind::<Array<Nullable<Text>>, _>(payout_currency)
        .bind::<Array<Nullable<Text>>, _>(fx_rate)
        .bind::<Array<Nullable<Text>>, _>(fx_markup)
        .bind::<Array<Int8>, _>(refunded_vat)
        .bind::<Array<Int8>, _>(refunded_commission_e8)
        .bind::<Array<Int8>, _>(refunded_commission_minor)
        .bind::<Array<Nullable<Int8>>, _>(refunded_payable)
        .bind::<Array<Nullable<Text>>, _>(refunded_payout_currency)
        .bind::<Array<Int8>, _>(charged_back_vat)
        .bind::<Array<Int8>, _>(charged_back_commission_e8)
        .bind::<Array<Int8>, _>(charged_back_commission_minor)
        .bind::<Array<Nullable<Int8>>, _>(charged_back_payable)
        .bind::<Array<Nullable<Text>>, _>(charged_back_payout_currency)
        .execute(&mut &*conn),
    ))
}

/// The money columns of a notification row: what the notice carried, as
/// sent (signed, `None` where it sent nothing). Written with the row's
/// other tokenized columns ([`super::apply::TokenizedColumns`]), read back
/// when a person applies the notification later
/// ([`super::apply::apply_repeat`], [`super::apply::apply_to_order`]), so
/// that it books the VAT, commission and payout side it would have booked
/// applied directly. All `None` on a row recorded before these columns
/// existed: rebuilt as a notice without money fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = notifications)]
pub(super) struct NotificationMoney {
    pub(super) vat_minor: Option<i64>,
    pub(super) commission_e8: Option<i64>,
    pub(super) payable_minor: Option<i64>,
    pub(super) payout_currency: Option<String>,
    pub(super) fx_rate: Option<String>,
    pub(super) fx_markup: Option<String>,
}

impl NotificationMoney {
    /// The notice's money again: VAT and commission in `currency` (the
    /// notice's own), the payable amount in its payout currency read with
    /// `currencies` (the store's table). Refused with a value-free reason
    /// when a stored column cannot be read.
    pub(super) fn notice_money(
        self,
        currency: Currency,
        currencies: &Currencies,
    ) -> Result<NoticeMoney, String> {
        let payable = match (self.payable_minor, self.payout_currency) {
            (Some(minor), Some(code)) => {
                let payout = currencies
                    .currency(&code)
                    .map_err(|err| format!("payout currency: {err}"))?;
                Some(Money::from_minor(minor, payout))
            }
            _ => None,
        };
        let rate = |text: Option<String>| {
            text.map(|t| Rate::parse(&t).map_err(|err| format!("stored rate: {err}")))
                .transpose()
        };
        Ok(NoticeMoney {
            vat: self
                .vat_minor
                .map(|minor| Money::from_minor(minor, currency)),
            commission: self
                .commission_e8
                .map(|e8| Commission::from_e8(e8, currency)),
            payable,
            fx_rate: rate(self.fx_rate)?,
            fx_markup: rate(self.fx_markup)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the notification row keeps is what the notice carried: the
    /// money rebuilt from the columns `TokenizedColumns` writes is equal.
    #[test]
    fn a_notices_money_survives_its_notification_row() {
        let eur = Currency::iso("EUR").expect("EUR");
        let usd = Currency::iso("USD").expect("USD");
        let money = NoticeMoney {
            vat: Some(Money::from_minor(-17_36, eur)),
            commission: Some(Commission::from_e8(-549_500_000, eur)),
            payable: Some(Money::from_minor(-88_20, usd)),
            fx_rate: Some(Rate::parse("1.0831").expect("rate")),
            fx_markup: Some(Rate::parse("4").expect("markup")),
        };
        let row = NotificationMoney {
            vat_minor: money.vat.map(|v| v.minor_units()),
            commission_e8: money.commission.map(|c| c.e8()),
            payable_minor: money.payable.map(|p| p.minor_units()),
            payout_currency: money.payable.map(|p| p.currency().as_str().to_owned()),
            fx_rate: money.fx_rate.as_ref().map(|r| r.as_str().to_owned()),
            fx_markup: money.fx_markup.as_ref().map(|r| r.as_str().to_owned()),
        };
        assert_eq!(
            row.notice_money(eur, &Currencies::iso()).expect("reads"),
            money
        );
        // A row recorded before the columns existed: no money.
        let old = NotificationMoney::default()
            .notice_money(eur, &Currencies::iso())
            .expect("reads");
        assert!(old.is_empty());
        let bad = NotificationMoney {
            fx_rate: Some("1e3".to_owned()),
            ..NotificationMoney::default()
        };
        assert!(bad.notice_money(eur, &Currencies::iso()).is_err());
    }
}
