//! pkcs11-se050-tool: maintenance of the SE050 behind the PKCS#11 module.
//!
//! ```text
//! pkcs11-se050-tool scp03-rotate [NEWKEYFILE]
//! ```
//! Replaces the chip's PlatformSCP03 keys (PUT KEY, the new keys encrypted with the current DEK,
//! inside the secure channel opened with the current keys). The chip and the key file are the
//! ones the module configuration names ($PKCS11_SE050_CONF, else
//! /etc/pkcs11-se050/pkcs11-se050.toml; `scp03_keys` must be set). The new keys come from
//! NEWKEYFILE (NXP's format, private) or are generated at random.
//!
//! No key set is ever lost (scp03/rotation.rs): the new keys are first written to
//! `SCP03_KEYS.new` (mode 0600); a channel is opened with the current keys; PUT KEY is sent once.
//! Whatever its answer (or none), the tool then opens a channel with the new keys, else with
//! the current ones, and keeps the file that worked: `.new` is renamed over `SCP03_KEYS` only
//! after a channel opened with it, and removed only after one opened with `SCP03_KEYS`. If
//! neither opens, both files stay and the message names them; the next run settles that first.
//! Exit status 0 on success, 1 with a message on stderr otherwise: scriptable.

use clap::{Parser, Subcommand, ValueHint};
use pkcs11_se050::config::{Config, TransportConfig};
use pkcs11_se050::device::{secure, Transport};
use pkcs11_se050::scp03::{rotation, StaticKeys};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The command line, defined once: parsing, `--help` and conf/completions/ come from it.
#[derive(Debug, Parser)]
#[command(
    name = "pkcs11-se050-tool",
    version,
    about = "Maintenance of the SE050 behind the PKCS#11 module",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replace the SE050's PlatformSCP03 keys
    #[command(
        long_about = "Replaces the SE050's PlatformSCP03 keys with those of NEWKEYFILE \
                            (or random ones) and then writes them to the configured \
                            scp03_keys file."
    )]
    Scp03Rotate {
        /// The new keys, in NXP's format (private); default: random keys
        #[arg(value_name = "NEWKEYFILE", value_hint = ValueHint::FilePath)]
        new_key_file: Option<PathBuf>,
    },
}

fn transport(config: &Config) -> Transport {
    match &config.transport {
        TransportConfig::I2c { device, address } => Transport::I2c {
            device: device.clone(),
            address: *address,
        },
        TransportConfig::Virtual { state, latency } => Transport::Virtual {
            state: state.clone(),
            latency: *latency,
        },
    }
}

fn rotate_keys(new_key_file: Option<&Path>) -> Result<String, String> {
    let config = Config::load().map_err(|e| e.to_string())?;
    let keys_file = config.scp03.keys_file.clone().ok_or_else(|| {
        let source = config
            .source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the built-in configuration".into());
        format!("{source} sets no scp03_keys: there are no PlatformSCP03 keys to rotate")
    })?;
    let new = match new_key_file {
        Some(path) => StaticKeys::load(path).map_err(|e| e.to_string())?,
        None => StaticKeys::random(),
    };
    let chip = transport(&config);
    let mut open = |keys: &Path| {
        let mut scp03 = config.scp03.clone();
        scp03.keys_file = Some(keys.to_path_buf());
        secure::open_transport_secured(&chip, config.lock_timeout, &scp03)
            .map_err(|e| e.to_string())
    };
    rotation::rotate_key_file(&keys_file, &new, config.scp03.kvn, &mut open)
}

fn main() -> ExitCode {
    pkcs11_se050::abi::init_logging();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // Exit status 1 for every failure (scriptable, as documented above), not clap's 2.
            return if error.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Scp03Rotate { new_key_file } => rotate_keys(new_key_file.as_deref()),
    };
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("pkcs11-se050-tool: {message}");
            ExitCode::FAILURE
        }
    }
}

/// conf/completions/ holds this tool's completions, generated from [`Cli`] by clap_complete and
/// checked in for the package; the test fails when they differ from the definition. To
/// regenerate: `REGENERATE_COMPLETIONS=1 cargo test -p pkcs11-se050 --bin pkcs11-se050-tool`.
#[cfg(test)]
mod completions {
    use super::Cli;
    use clap::CommandFactory;
    use clap_complete::Shell;

    const NAME: &str = "pkcs11-se050-tool";

    fn generated(shell: Shell) -> String {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), NAME, &mut out);
        let text = String::from_utf8(out).expect("clap_complete writes UTF-8");
        // clap_complete 4.6 spells a hyphenated binary's bash state two ways, so nothing after
        // a command completes (clap-rs/clap#6421): one spelling.
        match shell {
            Shell::Bash => {
                text.replace("pkcs11__subcmd__se050__subcmd__tool", "pkcs11__se050__tool")
            }
            _ => text,
        }
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn checked_in_completions_are_generated_from_the_definition() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/completions");
        let regenerate = std::env::var_os("REGENERATE_COMPLETIONS").is_some();
        let mut stale = Vec::new();
        for (shell, file) in [
            (Shell::Bash, format!("{NAME}.bash")),
            (Shell::Zsh, format!("_{NAME}")),
            (Shell::Fish, format!("{NAME}.fish")),
        ] {
            let fresh = generated(shell);
            if regenerate {
                std::fs::write(dir.join(&file), &fresh).unwrap();
            } else if std::fs::read_to_string(dir.join(&file)).ok().as_deref() != Some(&fresh) {
                stale.push(format!("conf/completions/{file}"));
            }
        }
        assert!(
            stale.is_empty(),
            "{} not what clap_complete generates from {NAME}'s definition; regenerate with \
             `REGENERATE_COMPLETIONS=1 cargo test -p pkcs11-se050 --bin {NAME}`",
            stale.join(", ")
        );
    }

    #[test]
    fn bash_completes_the_command() {
        let script = format!(
            "source {}/../conf/completions/{NAME}.bash; COMP_WORDS=({NAME} scp03-rotate --); \
             COMP_CWORD=2; _pkcs11__se050__tool {NAME} -- scp03-rotate; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            env!("CARGO_MANIFEST_DIR")
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .expect("bash runs");
        let words = String::from_utf8_lossy(&out.stdout);
        assert!(words.lines().any(|w| w == "--help"), "{words}");
    }
}
