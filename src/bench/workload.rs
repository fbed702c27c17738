//! What the bench feeds the system: simulated notifications with
//! duplicates and refunds (the simulator's own stories and copies), sealed
//! as the intake seals them, and the databases and broker names each phase
//! gets for itself (made from one template, dropped at the end).

use std::collections::HashSet;
use std::time::Duration;

use std::sync::Arc;

use crate::domain::Currencies;
use crate::ipn::{KeyId, KeyRing};
use crate::queue::{AmqpSettings, MessageMeta, Publisher, RetryDelays, Sealer, Topology};
use crate::secret::SecretUrl;
use crate::simulate::{AnomalyRates, Simulation, SimulationConfig, simulate};
use crate::store::{DatabaseSettings, NewOrder, SchemaPolicy, Store};

use super::BenchError;

/// The bench's own key. It signs the simulated notifications and nothing
/// else: it is public and must never be used for real.
pub const BENCH_KEY: &str = "ipn-reconciler-BENCH-ONLY-key";

/// The anomalies of the bench's stream: every one that a worker settles
/// with an ack (exact duplicates, processor retries, out-of-order
/// delivery; refunds, chargebacks and the other stories come with the
/// simulator's story mix). Unknown orders (delayed retries), forged and
/// unsigned copies (parked) are left out: they take the slow paths on
/// purpose, and a drain rate of them would measure the retry delays.
pub fn rates() -> AnomalyRates {
    AnomalyRates {
        duplicates: 0.05,
        out_of_order: 0.1,
        processor_retries: 0.05,
        ..AnomalyRates::NONE
    }
}

/// A simulation big enough for `count` deliveries.
pub struct Workload {
    /// Every order of the simulation (imported into the template).
    pub orders: Vec<NewOrder>,
    /// The bodies, in delivery order: at least `count`.
    pub bodies: Vec<Vec<u8>>,
}

impl Workload {
    /// Simulates orders until there are at least `count` deliveries.
    pub fn new(count: usize, seed: u64) -> Result<Self, BenchError> {
        let key = KeyRing::single(BENCH_KEY);
        let secret = &key.current().secret;
        // About 2.4 deliveries per order with these rates; grow if short.
        let mut orders = (count * 10 / 24).max(1);
        loop {
            let mut config = SimulationConfig::new(seed, orders);
            config.rates = rates();
            config.test_orders = 0.0;
            let simulation: Simulation =
                simulate(&config, secret).map_err(|err| BenchError::Workload(err.to_string()))?;
            let have = simulation.deliveries.len();
            if have >= count {
                return Ok(Self {
                    orders: simulation.orders,
                    bodies: simulation
                        .deliveries
                        .into_iter()
                        .map(|delivery| delivery.body)
                        .collect(),
                });
            }
            orders = orders * count / have.max(1) + 10;
        }
    }
}

/// The number of distinct bodies: the rows a settled run has recorded (an
/// exact byte copy adds none). Counted here, independently of the store.
pub fn distinct_bodies(bodies: &[Vec<u8>]) -> usize {
    bodies.iter().collect::<HashSet<_>>().len()
}

/// The bench's own seal key: public like [`BENCH_KEY`], for the bench's
/// own queues only.
const BENCH_SEAL_KEY: &[u8; 32] = b"ipn-reconciler BENCH-ONLY seal!!";

/// The sealer of the bench's messages, shared by its publishers, its
/// intake and its worker.
pub fn bench_sealer() -> Sealer {
    // A constant id of valid characters: parsing it cannot fail.
    let id = KeyId::parse("bench").expect("a valid key id");
    Sealer::single(id, BENCH_SEAL_KEY)
}

/// A body to publish sealed as the intake seals it. The seal binds the
/// receipt time, so it is made when the message is.
pub struct SealedBody {
    plain: Vec<u8>,
    sealer: Arc<Sealer>,
}

pub fn seal_all(bodies: &[Vec<u8>]) -> Result<Vec<SealedBody>, BenchError> {
    let sealer = Arc::new(bench_sealer());
    Ok(bodies
        .iter()
        .map(|body| SealedBody {
            plain: body.clone(),
            sealer: sealer.clone(),
        })
        .collect())
}

impl SealedBody {
    /// The message as the intake publishes it, received now: the publish
    /// time travels in `x-received-at`, which the worker's commit latency
    /// is measured from.
    pub fn message(&self) -> Result<(Vec<u8>, MessageMeta), BenchError> {
        let sealed = self
            .sealer
            .seal(&self.plain, MessageMeta::received(chrono::Utc::now(), None))
            .map_err(|err| BenchError::Workload(err.to_string()))?;
        Ok((sealed.body, sealed.meta))
    }
}

/// Publishes `bodies` to the work exchange with confirms, many in flight;
/// fails unless every one is confirmed.
pub async fn publish(
    publisher: &Publisher,
    bodies: &[SealedBody],
    on_done: impl Fn(usize),
) -> Result<(), BenchError> {
    for chunk in bodies.chunks(500) {
        let messages = chunk
            .iter()
            .map(SealedBody::message)
            .collect::<Result<Vec<_>, _>>()?;
        for result in publisher.publish_notifications(&messages).await? {
            result?;
        }
        on_done(chunk.len());
    }
    Ok(())
}

/// The databases and broker names of one bench run: a template database
/// (migrated, orders imported) and a copy of it per phase, each phase's
/// own queues; all removed by [`Resources::cleanup`].
pub struct Resources {
    server_url: SecretUrl,
    amqp_url: SecretUrl,
    prefix: String,
    template: String,
    databases: Vec<String>,
    topologies: Vec<Topology>,
}

impl Resources {
    /// Names everything after this process, so two runs never meet.
    pub fn new(server_url: SecretUrl, amqp_url: SecretUrl) -> Self {
        let prefix = format!(
            "ipn_bench_{}_{}",
            std::process::id(),
            chrono::Utc::now().timestamp_subsec_micros()
        );
        Self {
            server_url,
            amqp_url,
            template: format!("{prefix}_template"),
            prefix,
            databases: Vec::new(),
            topologies: Vec::new(),
        }
    }

    /// The URL of database `name` on the bench's server.
    pub fn url_of(&self, name: &str) -> Result<SecretUrl, BenchError> {
        with_database(self.server_url.expose(), name)
            .map(SecretUrl::new)
            .ok_or_else(|| {
                BenchError::Usage(format!(
                    "{} is not a postgres:// URL",
                    self.server_url.redacted()
                ))
            })
    }

    fn database_settings(
        &self,
        name: &str,
        pool_size: usize,
    ) -> Result<DatabaseSettings, BenchError> {
        Ok(DatabaseSettings {
            url: self.url_of(name)?,
            schema: SchemaPolicy::Migrate {
                create_database: true,
            },
            pool_size,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(60),
            lock_timeout: Duration::from_secs(30),
            // The bench reads no settings: its workload is the default
            // (ISO 4217) mix, and its pipeline has the default settings'
            // table, ISO 4217 alone.
            currencies: Currencies::iso(),
        })
    }

    /// Creates the template: migrated, with `orders` imported.
    pub async fn create_template(&mut self, orders: &[NewOrder]) -> Result<(), BenchError> {
        self.databases.push(self.template.clone());
        let store = Store::connect(self.database_settings(&self.template, 2)?).await?;
        store
            .import_orders(orders)
            .await
            .map_err(|err| BenchError::Database(err.to_string()))?;
        drop(store);
        Ok(())
    }

    /// A fresh copy of the template for one phase: its URL. The databases
    /// of the phases before are dropped first: their figures are taken,
    /// and autovacuum working through their tables would share the two
    /// cores with this phase.
    pub async fn database(&mut self, phase: &str) -> Result<SecretUrl, BenchError> {
        let name = format!("{}_{phase}", self.prefix);
        let client = self.maintenance().await?;
        let earlier: Vec<String> = self
            .databases
            .iter()
            .filter(|database| **database != self.template)
            .cloned()
            .collect();
        for database in earlier {
            drop_database(&client, &database)
                .await
                .map_err(|err| BenchError::Database(err.to_string()))?;
            self.databases.retain(|kept| *kept != database);
        }
        let statement = format!("CREATE DATABASE \"{name}\" TEMPLATE \"{}\"", self.template);
        // The template's last connections may still be closing.
        let mut tries = 0;
        loop {
            match client.batch_execute(&statement).await {
                Ok(()) => break,
                Err(err)
                    if err.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE)
                        && tries < 100 =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => return Err(BenchError::Database(err.to_string())),
            }
        }
        self.databases.push(name.clone());
        self.url_of(&name)
    }

    /// A store on a phase's database.
    pub async fn store(&self, url: &SecretUrl, pool_size: usize) -> Result<Store, BenchError> {
        let mut settings = self.database_settings("", pool_size)?;
        settings.url = url.clone();
        Ok(Store::connect(settings).await?)
    }

    /// The broker settings of a phase: queues of its own, declared empty.
    pub async fn topology(&mut self, phase: &str) -> Result<AmqpSettings, BenchError> {
        let base = format!("{}.{phase}", self.prefix.replace('_', "."));
        let topology = Topology::new(&base, RetryDelays::new(vec![Duration::from_secs(1)]), 20)
            .map_err(|err| BenchError::Usage(err.to_string()))?;
        let amqp = AmqpSettings::new(
            self.amqp_url.clone(),
            topology.clone(),
            Duration::from_secs(30),
        )?;
        let connection = amqp.connect("bench-setup").await?;
        self.topologies.push(topology.clone());
        topology.declare(&connection).await?;
        let _ = connection.close(200, "declared".into()).await;
        Ok(amqp)
    }

    async fn maintenance(&self) -> Result<tokio_postgres::Client, BenchError> {
        let url = self.url_of("postgres")?;
        let (client, connection) = tokio_postgres::connect(url.expose(), tokio_postgres::NoTls)
            .await
            .map_err(|err| BenchError::Database(crate::store::describe_connect_error(&err)))?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Drops every database and deletes every queue the run made; best
    /// effort (a failure is reported, not fatal).
    pub async fn cleanup(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.databases.is_empty() {
            // Nothing to drop: the server need not even answer.
        } else {
            match self.maintenance().await {
                Ok(client) => {
                    for name in self.databases.drain(..).rev() {
                        if let Err(err) = drop_database(&client, &name).await {
                            problems.push(format!("cannot drop database {name}: {err}"));
                        }
                    }
                }
                Err(err) => problems.push(err.to_string()),
            }
        }
        if !self.topologies.is_empty() {
            let settings = AmqpSettings::new(
                self.amqp_url.clone(),
                self.topologies[0].clone(),
                Duration::from_secs(10),
            );
            let removed = async {
                let connection = settings?.connect("bench-cleanup").await?;
                for topology in self.topologies.drain(..) {
                    let channel = connection.create_channel().await?;
                    topology.delete(&channel).await?;
                }
                let _ = connection.close(200, "cleaned up".into()).await;
                Ok::<_, crate::queue::QueueError>(())
            }
            .await;
            if let Err(err) = removed {
                problems.push(format!("cannot delete the bench's queues: {err}"));
            }
        }
        problems
    }
}

/// `url` with its database name replaced by `name`: everything from the
/// first `/` after the authority up to the query string.
pub fn with_database(url: &str, name: &str) -> Option<String> {
    let scheme_end = url.find("://")? + 3;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return None;
    }
    let rest = &url[scheme_end..];
    let (authority_and_path, query) = match rest.find('?') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    let authority = match authority_and_path.find('/') {
        Some(at) => &authority_and_path[..at],
        None => authority_and_path,
    };
    Some(format!("{}{authority}/{name}{query}", &url[..scheme_end]))
}

/// Drops one of the run's databases, even with connections still open.
async fn drop_database(
    client: &tokio_postgres::Client,
    name: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/app?sslmode=disable", "x").as_deref(),
            Some("postgres://u:p@h:5432/x?sslmode=disable")
        );
        assert_eq!(
            with_database("postgresql://h", "x").as_deref(),
            Some("postgresql://h/x")
        );
        assert_eq!(with_database("amqp://h/x", "y"), None);
    }

    #[test]
    fn a_workload_has_the_deliveries_asked_for_with_duplicates() {
        let workload = Workload::new(300, 7).expect("simulates");
        assert!(workload.bodies.len() >= 300);
        let distinct = distinct_bodies(&workload.bodies[..300]);
        assert!(distinct < 300, "exact duplicates are in the stream");
        assert!(distinct > 250);
    }
}
