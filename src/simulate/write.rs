//! Putting a [`Simulation`] on disk: the orders CSV the shop would import,
//! the expected final states, a manifest, and one file per delivery.
//!
//! Layout of an output directory:
//!
//! ```text
//! orders.csv      order_ref,amount,currency,created_at (store::orders format)
//! expected.json   order_ref -> {status, paid, refunded, review_kinds, processor_ref}
//! manifest.json   the config, expected outcome counts, unknown orders, stories
//! settlement.csv  the processor's settlement of the payments, with planted
//!                 differences (simulate::settlement); for the software
//!                 vendor, in the payout currency, nothing planted
//!                 (simulate::vendor::settlement)
//! payouts.csv     one bank transfer per settlement batch
//! vendor.json     the software vendor's expectation (that profile only)
//! bodies/NNNNN-<order_ref>-<kind>.txt   (kind: DeliveryKind::as_str)
//! ```
//!
//! Body files hold the raw POST body without a trailing newline, so their
//! SHA-256 is the notification's digest; NNNNN is the delivery position,
//! so sorting the names gives the delivery order.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{DeliveryKind, ExpectedOrder, Simulation};
use crate::store::NewOrder;

/// Why an output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the orders CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "{0} already holds files; choose an empty directory or pass --force to replace its .txt files"
    )]
    NotEmpty(PathBuf),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `NNNNN-<order_ref>-<kind>.txt`; characters of the reference that are
/// not safe in a file name become `_` (simulated references never have
/// any, but a name must never be able to leave its directory).
pub fn body_file_name(sequence: usize, order_ref: &str, kind: DeliveryKind) -> String {
    let safe: String = order_ref
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{sequence:05}-{safe}-{}.txt", kind.as_str())
}

/// Writes the orders as `store::orders::parse_orders_csv` reads them.
pub fn write_orders_csv(orders: &[NewOrder], out: impl Write) -> Result<(), WriteError> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(["order_ref", "amount", "currency", "created_at"])?;
    for order in orders {
        let created = order
            .created_at
            .map(|at| at.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        writer.write_record([
            order.order_ref.as_str(),
            &order.amount.format_amount(),
            order.amount.currency().as_str(),
            &created,
        ])?;
    }
    writer.flush().map_err(|err| WriteError::Csv(err.into()))?;
    Ok(())
}

#[derive(Serialize)]
struct ExpectedView<'a> {
    status: &'static str,
    paid: &'a str,
    refunded: &'a str,
    review_kinds: Vec<&'static str>,
    processor_ref: Option<&'a str>,
}

impl<'a> From<&'a ExpectedOrder> for ExpectedView<'a> {
    fn from(order: &'a ExpectedOrder) -> Self {
        Self {
            status: order.status.as_str(),
            paid: &order.paid,
            refunded: &order.refunded,
            review_kinds: order.review_kinds.iter().map(|k| k.as_str()).collect(),
            processor_ref: order.processor_ref.as_deref(),
        }
    }
}

/// Writes `order_ref -> {status, paid, refunded, review_kinds,
/// processor_ref}` (amounts as decimal strings, never JSON numbers).
pub fn write_expected_json(
    expected: &BTreeMap<String, ExpectedOrder>,
    mut out: impl Write,
) -> Result<(), WriteError> {
    let view: BTreeMap<&str, ExpectedView<'_>> = expected
        .iter()
        .map(|(order_ref, order)| (order_ref.as_str(), ExpectedView::from(order)))
        .collect();
    serde_json::to_writer_pretty(&mut out, &view)?;
    out.write_all(b"\n")
        .and_then(|()| out.flush())
        .map_err(|err| WriteError::Json(serde_json::Error::io(err)))?;
    Ok(())
}

#[derive(Serialize)]
struct Manifest<'a> {
    seed: u64,
    orders: usize,
    rates: BTreeMap<&'static str, f64>,
    test_orders: f64,
    expected_fields: bool,
    currencies: BTreeMap<&'a str, u32>,
    base_date: String,
    deliveries: BTreeMap<&'static str, usize>,
    expected_outcomes: BTreeMap<&'static str, usize>,
    unknown_orders: BTreeMap<&'a str, OrphanView>,
    stories: BTreeMap<&'a str, StoryView>,
}

#[derive(Serialize)]
struct OrphanView {
    story: &'static str,
    notifications: usize,
    review_kinds: Vec<&'static str>,
    anomalies: Vec<&'static str>,
}

#[derive(Serialize)]
struct StoryView {
    story: &'static str,
    anomalies: Vec<&'static str>,
}

/// Writes the manifest: how the run was made and what it should produce
/// beyond the per-order states (outcome counts, unknown orders).
pub fn write_manifest_json(simulation: &Simulation, mut out: impl Write) -> Result<(), WriteError> {
    let config = &simulation.config;
    let outcomes = &simulation.expected_outcomes;
    let manifest = Manifest {
        seed: config.seed,
        orders: config.orders,
        rates: config.rates.named().into_iter().collect(),
        test_orders: config.test_orders,
        expected_fields: config.expected_fields,
        currencies: config
            .currencies
            .iter()
            .map(|w| (w.currency.as_str(), w.weight))
            .collect(),
        base_date: config.base_date.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        deliveries: DeliveryKind::ALL
            .into_iter()
            .map(|kind| (kind.as_str(), simulation.count(kind)))
            .collect(),
        expected_outcomes: [
            ("applied", outcomes.applied),
            ("ignored", outcomes.ignored),
            ("mismatch", outcomes.mismatch),
            ("duplicate", outcomes.duplicate),
            ("order_not_found", outcomes.order_not_found),
            ("invalid_signature", outcomes.invalid_signature),
            ("malformed", outcomes.malformed),
        ]
        .into_iter()
        .collect(),
        unknown_orders: simulation
            .expected_orphans
            .iter()
            .map(|(order_ref, orphan)| {
                (
                    order_ref.as_str(),
                    OrphanView {
                        story: orphan.story.as_str(),
                        notifications: orphan.notifications,
                        review_kinds: orphan.review_kinds.iter().map(|k| k.as_str()).collect(),
                        anomalies: orphan.anomalies.iter().map(|a| a.as_str()).collect(),
                    },
                )
            })
            .collect(),
        stories: simulation
            .expected
            .iter()
            .map(|(order_ref, order)| {
                (
                    order_ref.as_str(),
                    StoryView {
                        story: order.story.as_str(),
                        anomalies: order.anomalies.iter().map(|a| a.as_str()).collect(),
                    },
                )
            })
            .collect(),
    };
    serde_json::to_writer_pretty(&mut out, &manifest)?;
    out.write_all(b"\n")
        .and_then(|()| out.flush())
        .map_err(|err| WriteError::Json(serde_json::Error::io(err)))?;
    Ok(())
}

/// Writes every delivery's body into `dir` (created if missing), calling
/// `on_written` after each file.
pub fn write_bodies(
    dir: &Path,
    simulation: &Simulation,
    mut on_written: impl FnMut(usize),
) -> Result<(), WriteError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    for delivery in &simulation.deliveries {
        let path = dir.join(delivery.file_name());
        fs::write(&path, &delivery.body).map_err(io_error(&path))?;
        on_written(delivery.sequence);
    }
    Ok(())
}

/// What [`write_all`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub orders_csv: PathBuf,
    pub expected_json: PathBuf,
    pub manifest_json: PathBuf,
    pub bodies_dir: PathBuf,
    /// The processor's settlement of the payments, with planted
    /// differences (`simulate::settlement`).
    pub settlement_csv: PathBuf,
    /// One bank transfer per settlement batch.
    pub payouts_csv: PathBuf,
}

/// Writes the whole simulation under `out`.
///
/// A `bodies/` directory that already holds files is refused unless
/// `overwrite`, which removes its `.txt` files first: stale bodies of an
/// earlier, longer run would otherwise be mixed into this one.
pub fn write_all(
    simulation: &Simulation,
    out: &Path,
    overwrite: bool,
    on_written: impl FnMut(usize),
) -> Result<Written, WriteError> {
    fs::create_dir_all(out).map_err(io_error(out))?;
    let bodies_dir = out.join("bodies");
    if bodies_dir.is_dir() {
        let entries: Vec<PathBuf> = fs::read_dir(&bodies_dir)
            .map_err(io_error(&bodies_dir))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io_error(&bodies_dir))?;
        if !entries.is_empty() {
            if !overwrite {
                return Err(WriteError::NotEmpty(bodies_dir));
            }
            for path in entries
                .iter()
                .filter(|p| p.extension().is_some_and(|ext| ext == "txt"))
            {
                fs::remove_file(path).map_err(io_error(path))?;
            }
        }
    }
    let written = Written {
        orders_csv: out.join("orders.csv"),
        expected_json: out.join("expected.json"),
        manifest_json: out.join("manifest.json"),
        bodies_dir,
        settlement_csv: out.join("settlement.csv"),
        payouts_csv: out.join("payouts.csv"),
    };
    let create = |path: &Path| {
        fs::File::create(path)
            .map(io::BufWriter::new)
            .map_err(io_error(path))
    };
    write_orders_csv(&simulation.orders, create(&written.orders_csv)?)?;
    write_expected_json(&simulation.expected, create(&written.expected_json)?)?;
    write_manifest_json(simulation, create(&written.manifest_json)?)?;
    let settled = if let Some(vendor) = &simulation.vendor {
        // The vendor's expectation, and its settlement in the payout
        // currency (`vendor::settlement`).
        super::vendor::write_vendor_json(vendor, create(&out.join("vendor.json"))?)?;
        super::vendor::settlement::settlement(vendor)
    } else {
        super::settlement::settlement(simulation)
    };
    super::settlement::write_settlement_csv(&settled, create(&written.settlement_csv)?)?;
    super::settlement::write_payouts_csv(&settled, create(&written.payouts_csv)?)?;
    write_bodies(&written.bodies_dir, simulation, on_written)?;
    Ok(written)
}
