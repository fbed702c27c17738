//! A `serve` process, as operators run it.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::TestDb;
use super::amqp::{TestQueue, key_env, wait_until};

/// A `serve` process whose standard error goes to a file. It binds its
/// listeners on port 0 and the test reads the bound addresses back from its
/// log: no port is picked here and released for the daemon to take (a
/// race when tests run in parallel).
pub struct Daemon {
    pub child: Child,
    log: tempfile::NamedTempFile,
}

impl Daemon {
    pub fn start(db: &TestDb, queue: &TestQueue, extra: &[(&'static str, &str)]) -> Self {
        Self::start_with(db, queue, &[], extra)
    }

    /// Like [`Daemon::start`], with arguments after `serve`.
    pub fn start_with(
        db: &TestDb,
        queue: &TestQueue,
        args: &[&str],
        extra: &[(&'static str, &str)],
    ) -> Self {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ipn-reconciler"));
        command
            .arg("serve")
            .args(args)
            .envs(queue.env())
            .envs(key_env())
            .env("DATABASE_URL", &db.url)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env("IPN_HTTP_ADDR", "127.0.0.1:0")
            .env("IPN_INTAKE_ADDR", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log handle"));
        for (name, value) in extra {
            command.env(name, value);
        }
        let child = command.spawn().expect("spawn serve");
        Self { child, log }
    }

    /// Another long-running command (`intake`) with the broker and key
    /// settings of `serve`, without a database; listeners on port 0.
    pub fn start_command(command: &str, queue: &TestQueue, extra: &[(&'static str, &str)]) -> Self {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ipn-reconciler"));
        child
            .arg(command)
            .envs(queue.env())
            .envs(key_env())
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env("IPN_HTTP_ADDR", "127.0.0.1:0")
            .env("IPN_INTAKE_ADDR", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log handle"));
        for (name, value) in extra {
            child.env(name, value);
        }
        let child = child.spawn().expect("spawn the command");
        Self { child, log }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).expect("read log")
    }

    /// The address of the listener whose "... listening" line has
    /// `message`, once the daemon has logged it.
    pub async fn listening(&self, message: &str) -> SocketAddr {
        let mut found = None;
        let logged = wait_until(Duration::from_secs(20), || {
            found = self.logs().lines().find_map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line).ok()?;
                let fields = entry.get("fields")?;
                (fields.get("message")?.as_str()? == message)
                    .then(|| fields.get("addr")?.as_str()?.parse().ok())
                    .flatten()
            });
            std::future::ready(found.is_some())
        })
        .await;
        assert!(logged, "no `{message}` line; logs:\n{}", self.logs());
        found.expect("address")
    }

    pub async fn ops_addr(&self) -> SocketAddr {
        self.listening("operations endpoint listening").await
    }

    pub async fn intake_addr(&self) -> SocketAddr {
        self.listening("intake listening").await
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    pub async fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "serve did not exit in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = tokio::net::TcpStream::connect(self.ops_addr().await)
            .await
            .ok()?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    }
}

impl Daemon {
    /// `GET path`, given up after `limit` (`None`): a daemon that stops
    /// answering fails the test with its state instead of hanging it.
    pub async fn get_within(&self, path: &str, limit: Duration) -> Option<(u16, String)> {
        tokio::time::timeout(limit, self.get(path))
            .await
            .ok()
            .flatten()
    }

    /// The status of `/readyz`, given up after 5 s.
    pub async fn ready_status(&self) -> Option<u16> {
        self.get_within("/readyz", Duration::from_secs(5))
            .await
            .map(|(status, _)| status)
    }

    /// How many JSON log lines have `message` as their message.
    pub fn lines_with(&self, message: &str) -> usize {
        self.logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|entry| entry["fields"]["message"] == message)
            .count()
    }

    /// The last 40 lines of the log, for a failure's message.
    pub fn tail(&self) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
