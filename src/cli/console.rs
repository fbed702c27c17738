//! `ipn-reconciler console`: the finance console alone, against the
//! database (`serve --console-addr` runs it inside the daemon), and
//! `console user add|disable`.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};

use super::args::database;
use super::args::{
    self, BrokerFlags, ConfigFile, ConsoleFlags, DatabaseFlags, FourEyesFlags, NotificationFlags,
    OperationsFlags, PeriodFlags,
};
use super::{CliError, CliResult, block_on, settings_error};
use crate::app::shutdown_signal;
use crate::console::{self, Clock, Console, auth};
use crate::store::Store;
use crate::store::console::ConsoleRole;
use crate::telemetry;

/// Runs the finance console alone: `console --console-addr ADDR`.
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Create the first user with `console user add NAME --role resolver` \
(the password on standard input), then open http://ADDR/ in a browser.\n\n\
Exit codes: 0 stopped cleanly (SIGTERM or SIGINT), 2 no --console-addr or invalid configuration, \
3 the listener cannot be bound or the database cannot be reached."
)]
pub struct ConsoleArgs {
    #[command(subcommand)]
    pub command: Option<ConsoleCommand>,
    #[command(flatten)]
    pub db: DatabaseFlags,
    #[command(flatten)]
    pub notifications: NotificationFlags,
    #[command(flatten)]
    pub broker: BrokerFlags,
    #[command(flatten)]
    pub console: ConsoleFlags,
    #[command(flatten)]
    pub operations: OperationsFlags,
    /// The period filters' time zone.
    #[command(flatten)]
    pub periods: PeriodFlags,
    /// The console's second look at a link_order.
    #[command(flatten)]
    pub four_eyes: FourEyesFlags,
}

#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// The console's users: `user add`, `user disable`.
    #[command(subcommand, after_help = super::SEE_EACH_COMMAND)]
    User(UserCommand),
}

/// `--role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Reads every page and downloads every table.
    Viewer,
    /// May also resolve review items and requeue parked messages.
    Resolver,
}

impl From<RoleArg> for ConsoleRole {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Viewer => ConsoleRole::Viewer,
            RoleArg::Resolver => ConsoleRole::Resolver,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from standard input (one line, at
    /// least 12 characters) and stored as an argon2id hash.
    #[command(
        after_help = "Example: `printf '%s\\n' \"$PASSWORD\" | ipn-reconciler console user add \
alice --role resolver`; typed at a terminal, end with Enter and Ctrl-D.\n\n\
Exit codes: 0 added, 1 a user with that name exists, 2 an invalid name, a password too short, \
or invalid configuration, 3 the database cannot be reached."
    )]
    Add {
        #[command(flatten)]
        db: DatabaseFlags,
        /// 1-64 letters, digits, `.`, `_` or `-`: the name the ledger shows.
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Who adds the user, for the action log (which also records the
        /// operating-system account and host); default: the
        /// operating-system account.
        #[arg(long, value_name = "WHO")]
        by: Option<String>,
    },
    /// Disable a user: they cannot log in, and their sessions end now.
    #[command(
        after_help = "Exit codes: 0 disabled (or already disabled), 1 no such user, \
2 invalid configuration, 3 the database cannot be reached."
    )]
    Disable {
        #[command(flatten)]
        db: DatabaseFlags,
        name: String,
        /// Who disables the user, for the action log; default: the
        /// operating-system account.
        #[arg(long, value_name = "WHO")]
        by: Option<String>,
    },
}

pub fn run(config: &ConfigFile, args: ConsoleArgs) -> CliResult {
    match args.command {
        Some(ConsoleCommand::User(command)) => user(config, command),
        None => serve(config, args),
    }
}

fn serve(config: &ConfigFile, args: ConsoleArgs) -> CliResult {
    let loaded = args::load(
        config,
        &[
            &args.db,
            &args.notifications,
            &args.broker,
            &args.console,
            &args.operations,
            &args.periods,
            &args.four_eyes,
        ],
    )
    .map_err(settings_error)?;
    telemetry::init(loaded.settings.operations.log_format);
    let Some(settings) = loaded.console().map_err(settings_error)? else {
        return Err(CliError::usage(anyhow::anyhow!(
            "say where the console listens: --console-addr ADDR (or IPN_CONSOLE_ADDR, or \
             `console-addr` in the configuration file); a port alone binds 127.0.0.1"
        )));
    };
    let mut database = loaded.database().map_err(settings_error)?;
    database.schema = database.schema.require_unless_migrating();
    let amqp = loaded.amqp().map_err(settings_error)?;
    let sealer = loaded.sealer_if_set().map_err(settings_error)?;
    let pseudonym_key = loaded.pseudonym_key().map_err(settings_error)?;
    block_on(async move {
        let shutdown = shutdown_signal()?;
        let listener = tokio::net::TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("cannot listen on {} for the console", settings.addr))?;
        let store = Store::connect(database).await?;
        let console = Console {
            store,
            settings,
            clock: Clock::system(),
            amqp: Some(amqp),
            sealer,
            pseudonym_key: pseudonym_key.map(std::sync::Arc::new),
        };
        console::serve(listener, console, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn user(config: &ConfigFile, command: UserCommand) -> CliResult {
    match command {
        UserCommand::Add { db, name, role, by } => {
            auth::check_name(&name).map_err(CliError::usage)?;
            let actor = super::actor::actor(by.as_deref())?;
            let password = read_password()?;
            let hash = auth::hash_password(&password).map_err(CliError::usage)?;
            let settings = database(config, &db)?;
            block_on(async move {
                let store = Store::connect(settings).await?;
                if store
                    .add_console_user_by(&actor, &name, role.into(), &hash, chrono::Utc::now())
                    .await?
                {
                    println!("console user {name} added ({})", ConsoleRole::from(role));
                    Ok(ExitCode::SUCCESS)
                } else {
                    eprintln!("a console user named {name} exists already");
                    Ok(ExitCode::from(super::EXIT_INVALID))
                }
            })
        }
        UserCommand::Disable { db, name, by } => {
            let actor = super::actor::actor(by.as_deref())?;
            let settings = database(config, &db)?;
            block_on(async move {
                let store = Store::connect(settings).await?;
                if store
                    .disable_console_user_by(&actor, &name, chrono::Utc::now())
                    .await?
                {
                    println!("console user {name} disabled; their sessions have ended");
                    Ok(ExitCode::SUCCESS)
                } else {
                    eprintln!("no console user named {name}");
                    Ok(ExitCode::from(super::EXIT_INVALID))
                }
            })
        }
    }
}

/// The password: standard input's first line, without its line break.
fn read_password() -> Result<zeroize::Zeroizing<String>, CliError> {
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .take(4096)
        .read_to_string(&mut text)
        .context("cannot read the password from standard input")?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(CliError::usage(anyhow::anyhow!(
            "no password on standard input: `printf '%s\\n' \"$PASSWORD\" | ipn-reconciler \
             console user add NAME --role ROLE`"
        )));
    }
    Ok(zeroize::Zeroizing::new(line.to_owned()))
}
