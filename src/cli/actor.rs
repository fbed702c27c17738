//! Who acts on the command line: the name given with `--by`, and the
//! operating-system account and host the command runs under, which the
//! program reads (the account from the process's user id, not from the
//! environment) and the action log records beside the name.

use super::CliError;
use crate::domain::pan::check_free_text;
use crate::services::review::Origin;
use crate::store::action_log::Actor;

/// The machine the command runs on: its account and host name, `None`
/// for what cannot be read.
pub fn machine() -> (Option<String>, Option<String>) {
    let readable = |value: Result<String, _>| value.ok().filter(|v: &String| !v.trim().is_empty());
    (readable(whoami::username()), readable(whoami::hostname()))
}

/// The command line as a resolution's origin.
pub fn origin() -> Origin {
    let (os_user, host) = machine();
    Origin::cli(os_user, host)
}

/// The actor named `--by` (or, without it, by the operating-system
/// account): not empty, at most 100 characters, without control
/// characters or a card number. Refused (a usage error) when neither
/// names anyone.
pub fn actor(by: Option<&str>) -> Result<Actor, CliError> {
    let (os_user, host) = machine();
    let name = match by.map(str::trim) {
        Some(by) => by.to_owned(),
        None => os_user.clone().unwrap_or_default(),
    };
    if name.is_empty() {
        return Err(CliError::usage(anyhow::anyhow!(
            "--by must name who does this: the action log records who acted"
        )));
    }
    if name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(CliError::usage(anyhow::anyhow!(
            "--by: at most 100 characters, without control characters"
        )));
    }
    check_free_text("--by", &name).map_err(CliError::usage)?;
    Ok(Actor::cli(&name, os_user, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_by_and_the_machine_is_read_not_typed() {
        let named = actor(Some("  finance-anna ")).expect("named");
        assert_eq!(named.name, "finance-anna");
        assert_eq!(named.source.as_str(), "cli");
        assert_eq!((named.os_user, named.host), machine());
        assert!(actor(Some("  ")).is_err());
        assert!(actor(Some("card 4111 1111 1111 1111")).is_err());
        assert!(actor(Some("a\u{7}b")).is_err());
    }
}
