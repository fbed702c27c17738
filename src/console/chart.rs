//! The overview's chart: paid, refunded and the balance per day, one chart per
//! currency (amounts of different currencies are never drawn on one
//! scale), as SVG drawn on the server.
//!
//! Coordinates are integers computed from the minor units with integer
//! arithmetic: the chart is a picture of exact amounts, not a place where
//! money becomes a float. Each bar has a `<title>` with its exact amount,
//! and the table next to the chart holds the same numbers for screen
//! readers and downloads.

use maud::{Markup, html};

use crate::domain::{Currency, Money};
use crate::store::console::DailyMoney;

/// Width and height of the drawing area, in SVG units.
const WIDTH: i64 = 720;
const HEIGHT: i64 = 240;
/// Space for the axis labels.
const LEFT: i64 = 90;
const BOTTOM: i64 = 30;

/// The three series, their CSS class and name.
const SERIES: [(&str, &str); 3] = [
    ("paid", "Paid"),
    ("refunded", "Refunded"),
    ("balance", "Balance"),
];

/// One chart per currency of `days` (which may hold several currencies;
/// each currency's days are drawn in the order given).
pub fn render(days: &[DailyMoney]) -> Markup {
    let mut currencies: Vec<Currency> = days.iter().map(|d| d.currency).collect();
    currencies.sort();
    currencies.dedup();
    html! {
        @if currencies.is_empty() {
            p { "No money moved in this period." }
        }
        @for currency in currencies {
            (render_currency(currency, &days.iter().filter(|d| d.currency == currency).collect::<Vec<_>>()))
        }
    }
}

/// The value of series `index` for a day, in minor units.
fn value(day: &DailyMoney, index: usize) -> i64 {
    match index {
        0 => day.paid,
        1 => day.refunded,
        _ => day.balance(),
    }
}

/// Scales `minor` (within `low..=high`, which holds 0) to a y coordinate:
/// `high` at the top, `low` at the bottom of the plot.
fn y_of(minor: i64, low: i64, high: i64) -> i64 {
    let plot = i128::from(HEIGHT - BOTTOM);
    let span = i128::from(high - low).max(1);
    let from_top = (i128::from(high) - i128::from(minor)) * plot / span;
    i64::try_from(from_top).unwrap_or(0)
}

fn render_currency(currency: Currency, days: &[&DailyMoney]) -> Markup {
    let high = days
        .iter()
        .flat_map(|d| (0..3).map(move |i| value(d, i)))
        .max()
        .unwrap_or(0)
        .max(0);
    let low = days.iter().map(|d| d.balance()).min().unwrap_or(0).min(0);
    let (high, low) = if high == low { (1, low) } else { (high, low) };
    let zero = y_of(0, low, high);
    let count = i64::try_from(days.len()).unwrap_or(1).max(1);
    let slot = (WIDTH - LEFT) / count;
    // A quarter of a day's slot, but no wider than 40: one day alone is not a wall.
    let bar = (slot / 4).clamp(1, 40);
    let amount = |minor: i64| Money::from_minor(minor, currency).format_amount();
    let label = format!(
        "{currency}: paid, refunded and balance per day, from {} to {}",
        days.first().map(|d| d.day.to_string()).unwrap_or_default(),
        days.last().map(|d| d.day.to_string()).unwrap_or_default()
    );
    html! {
        figure.chart {
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {WIDTH} {HEIGHT}"))
                role="img" aria-label=(label) {
                title { (label) }
                text.axis x=(LEFT - 6) y="12" text-anchor="end" { (amount(high)) }
                text.axis x=(LEFT - 6) y=(zero + 4) text-anchor="end" { (amount(0)) }
                @if low < 0 {
                    text.axis x=(LEFT - 6) y=(HEIGHT - BOTTOM) text-anchor="end" { (amount(low)) }
                }
                // Closed explicitly: in HTML, an SVG element written `<line>`
                // would hold everything after it.
                line.zero x1=(LEFT) y1=(zero) x2=(WIDTH) y2=(zero) {}
                @for (i, day) in days.iter().enumerate() {
                    @let x0 = LEFT + i64::try_from(i).unwrap_or(0) * slot + bar / 2;
                    @for (s, (class, name)) in SERIES.iter().enumerate() {
                        @let v = value(day, s);
                        @let y = y_of(v, low, high);
                        @let (top, height) = if y < zero { (y, zero - y) } else { (zero, y - zero) };
                        rect class=(class) x=(x0 + i64::try_from(s).unwrap_or(0) * bar) y=(top)
                            width=(bar) height=(height.max(1)) {
                            title { (day.day) " " (name) ": " (amount(v)) " " (currency) }
                        }
                    }
                    text.axis x=(x0 + bar * 3 / 2) y=(HEIGHT - 8) text-anchor="middle" {
                        (day.day.format("%m-%d"))
                    }
                }
            }
            figcaption {
                (currency) ": "
                @for (class, name) in SERIES {
                    span class=(format!("key {class}")) { (name) } " "
                }
                "(balance = paid - refunded - reversed - charged back + reinstated, before VAT, commission and fees)"
            }
        }
    }
}

// Amounts in cents are written `units_cents` (100_00 is 100.00 EUR).
#[cfg(test)]
#[allow(clippy::inconsistent_digit_grouping)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn day(d: u32, paid: i64, refunded: i64, taken_back: i64) -> DailyMoney {
        DailyMoney {
            day: NaiveDate::from_ymd_opt(2026, 11, d).expect("date"),
            currency: Currency::iso("EUR").expect("EUR"),
            paid,
            refunded,
            taken_back,
        }
    }

    #[test]
    fn bars_scale_to_the_largest_amount_and_a_negative_balance_goes_below_zero() {
        let svg = render(&[day(1, 100_00, 0, 0), day(2, 0, 0, 50_00)]).into_string();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains("2026-11-01 Paid: 100.00 EUR"), "{svg}");
        assert!(svg.contains("2026-11-02 Balance: -50.00 EUR"), "{svg}");
        // 100.00 is the top, -50.00 the bottom: zero sits at 2/3 of the plot.
        assert_eq!(y_of(100_00, -50_00, 100_00), 0);
        assert_eq!(y_of(0, -50_00, 100_00), (HEIGHT - BOTTOM) * 2 / 3);
        assert_eq!(y_of(-50_00, -50_00, 100_00), HEIGHT - BOTTOM);
        assert!(
            !svg.contains("style="),
            "no inline style: the CSP refuses it"
        );
    }

    #[test]
    fn each_currency_has_its_own_chart_and_nothing_moved_says_so() {
        let mut usd = day(1, 5, 0, 0);
        usd.currency = Currency::iso("USD").expect("USD");
        let svg = render(&[day(1, 1, 0, 0), usd]).into_string();
        assert_eq!(svg.matches("<svg").count(), 2);
        assert!(render(&[]).into_string().contains("No money moved"));
    }
}
