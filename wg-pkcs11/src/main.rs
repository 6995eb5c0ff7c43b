//! `wg-pkcs11`: a WireGuard interface whose static key may live in a PKCS#11 token.
//!
//! The command line is defined once, in cli/args.rs (clap): `wg-pkcs11 --help`, the man page
//! check and conf/completions/ all follow from it. This file parses and dispatches.

mod cli;

use std::process::ExitCode;

use clap::FromArgMatches;
use cli::args::{Cli, Command};

/// A usage error, as clap words it (with the usage line), and wg-quick's exit status for it,
/// as for every failure (clap's own is 2); help and --version exit 0.
fn usage_exit(error: clap::Error) -> ExitCode {
    let _ = error.print();
    if error.use_stderr() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Parses the command line (cli/args.rs), or says why it cannot.
fn parse(args: Vec<String>) -> Result<Cli, clap::Error> {
    let mut command = cli::args::command();
    let args = cli::args::help_word_as_flag(args);
    let matches =
        command.try_get_matches_from_mut(std::iter::once("wg-pkcs11".into()).chain(args))?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
    if let Some(name) = &cli.interface {
        // Not a command, and not an interface name either (e.g. a mistyped option value).
        if !cli.foreground && (name.starts_with('-') || !cli::keyfile::is_interface_name(name)) {
            return Err(command.error(
                clap::error::ErrorKind::InvalidSubcommand,
                format!("unknown command `{name}`"),
            ));
        }
    }
    Ok(cli)
}

fn run(cli: Cli) -> Result<(), String> {
    let Some(command) = cli.command else {
        // parse() leaves no other case: no command means the wg-quick userspace form.
        let ifname = cli.interface.as_deref().unwrap_or_default();
        return cli::userspace::run(ifname, cli.foreground);
    };
    match command {
        Command::Up { foreground, target } => cli::up::run(&target.target, foreground),
        Command::Down(target) => cli::quick::down(&target.target),
        Command::Save(target) => cli::quick::save(&target.target),
        Command::Strip(target) => cli::quick::strip(&target.target),
        Command::Genkey { uri } => cli::keys::genkey(&uri),
        Command::Pubkey { uri: None } => cli::keys::pubkey_from_stdin(),
        Command::Pubkey { uri: Some(uri) } => cli::keys::pubkey(&uri),
        Command::Set { interface, uri, .. } => cli::rotate::set_private_key_uri(&interface, &uri),
        Command::Rotate(options) => cli::rotate::rotate(&options),
        Command::Attest(args) => cli::attest::run(&args),
        Command::VerifyAttestation(args) => cli::verify_attestation::run(&args),
        Command::Admit(args) => cli::admit::run(args),
        Command::Nonce(args) => cli::nonce::run(&args),
        Command::List { uri } => cli::list::run(uri.as_deref()),
        Command::Show {
            json: true,
            interface: None,
        } => cli::show_health::show_all_json(),
        Command::Show {
            json: true,
            interface: Some(ifname),
        } => cli::show_health::show_json(&ifname),
        Command::Show {
            json: false,
            interface: None,
        } => cli::show::show_all(),
        Command::Show {
            json: false,
            interface: Some(ifname),
        } => cli::show::show(&ifname),
        Command::Version => {
            println!("wg-pkcs11 {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    cli::logging::init();
    // std::env::args() would panic on an argument that is not UTF-8; clap would only say
    // "invalid UTF-8" without naming the argument.
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(std::ffi::OsString::into_string)
        .collect();
    let parsed = match args {
        Ok(args) => parse(args),
        Err(bad) => Err(cli::args::command().error(
            clap::error::ErrorKind::InvalidUtf8,
            format!("argument {bad:?} is not valid UTF-8"),
        )),
    };
    let result = match parsed {
        Ok(cli) => run(cli),
        Err(error) => return usage_exit(error),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wg-pkcs11: {}", wg_pkcs11::uri::redact_pin_values(&message));
            if wg_pkcs11::key::login::pin_failed() {
                // Restarting cannot fix a PIN: the units list this in RestartPreventExitStatus=.
                ExitCode::from(wg_pkcs11::key::login::PIN_EXIT_STATUS)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
