//! The command line of `wg-pkcs11`, defined once: parsing, `--help`, the man page check and the
//! shell completions in conf/completions/ (cli/completions.rs) all come from these types.
//!
//! wg-quick compatibility shapes it: `wg-pkcs11 [-f] IFNAME` (stock wg-quick's
//! WG_QUICK_USERSPACE_IMPLEMENTATION) is the top level's own optional argument, beside the
//! commands; `up|down|save|strip CONF|IFNAME` are commands. Usage errors exit 1, as wg-quick's
//! (main.rs), not clap's 2.

use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueHint};

const AFTER_HELP: &str = "\
URI examples:
  pkcs11:token=SE050;object=wg-key;type=private?module-name=pkcs11-se050
  pkcs11:object=wg-key?module-name=pkcs11-se050&pin-source=/etc/wireguard/pin
  pkcs11:object=wg-key?module-name=pkcs11-se050&pin-source=credential:pin

Environment: RUST_LOG=debug|info|warn (default info); PKCS11_SE050_CONF (the module's config);
WG_PKCS11_CONFIG_DIR (instead of /etc/wireguard); WG_PKCS11_STATE_DIR (the memory of refused
PINs, default /var/lib/wg-pkcs11); CREDENTIALS_DIRECTORY (systemd: pin-source=credential:NAME,
and the credential `pin` when the URI names no PIN).
Exit status: 0 on success, 77 when the PIN is the problem (refused, locked, missing, or not
tried so as not to use up the chip's attempts: restarting cannot help), 1 on any other error.";

const USAGE: &str = "wg-pkcs11 [ up | down | save | strip ] [ CONFIG_FILE | INTERFACE ]
       wg-pkcs11 [ -f | --foreground ] INTERFACE
       wg-pkcs11 [ genkey URI | pubkey [URI] | show [INTERFACE] | --version | --help ]
       wg-pkcs11 COMMAND --help";

/// `COMMAND --help` begins with its usage line (as it always did; tests/wg_quick.rs checks).
const COMMAND_HELP_TEMPLATE: &str =
    "{usage-heading} {usage}\n\n{about-with-newline}\n{all-args}{after-help}";

#[derive(Debug, Parser)]
#[command(
    name = "wg-pkcs11",
    version,
    about = "A WireGuard daemon whose private key lives in a PKCS#11 token (e.g. an NXP SE050), \
             used like wg-quick.",
    long_about = "A WireGuard daemon whose private key lives in a PKCS#11 token (e.g. an NXP \
                  SE050), used like wg-quick. INTERFACE means /etc/wireguard/INTERFACE.conf; \
                  PrivateKey may be a pkcs11: URI, or be left out and the URI kept in \
                  /etc/wireguard/INTERFACE.pkcs11.",
    override_usage = USAGE,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With INTERFACE: stay in the foreground (as `wireguard-go -f`)
    #[arg(short = 'f', long = "foreground", requires = "interface")]
    pub foreground: bool,
    /// Userspace-implementation mode, as `wireguard-go INTERFACE`: create the interface and
    /// wait for `wg setconf`. For stock wg-quick:
    /// WG_QUICK_USERSPACE_IMPLEMENTATION=wg-pkcs11 wg-quick up INTERFACE
    #[arg(value_name = "INTERFACE")]
    pub interface: Option<String>,
}

/// A config file, or an interface name meaning /etc/wireguard/NAME.conf.
#[derive(Debug, Args)]
pub struct Target {
    /// A wg-quick config file, or INTERFACE for /etc/wireguard/INTERFACE.conf
    #[arg(value_name = "CONFIG_FILE|INTERFACE", value_hint = ValueHint::FilePath)]
    pub target: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bring up the interface: PreUp, the device, addresses, MTU, routes, DNS, PostUp
    #[command(
        long_about = "Bring up the interface and return once it is up (the daemon runs \
                            on). With --foreground, run in the foreground until SIGINT/SIGTERM \
                            (for systemd). SIGHUP re-reads the config and applies peer changes \
                            as `wg syncconf` does."
    )]
    Up {
        /// Stay in the foreground (for service managers)
        #[arg(short = 'f', long = "foreground")]
        foreground: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Take the interface down (saving it first if SaveConfig = true)
    Down(Target),
    /// Save the running peers, listen port and fwmark into the config, keeping PrivateKey
    Save(Target),
    /// Print the config as `wg setconf` reads it (no wg-quick keys, no pkcs11: PrivateKey)
    Strip(Target),
    /// Generate an X25519 key pair in the token, print its public key
    #[command(
        long_about = "Generate an X25519 key pair in the token named by URI (object=LABEL \
                            and/or id=ID name the new key) and print its public key in base64."
    )]
    Genkey {
        /// The new key's pkcs11: URI
        #[arg(value_name = "URI")]
        uri: String,
    },
    /// Print the public key of a token key (or of a base64 private key on stdin)
    Pubkey {
        /// The key's pkcs11: URI; without it, read a base64 private key on stdin like `wg pubkey`
        #[arg(value_name = "URI")]
        uri: Option<String>,
    },
    /// Show the interface's state, with its public key and the key's health
    #[command(
        long_about = "Show the state of one interface, or of every wg-pkcs11/userspace \
                            interface, with the key's health (URI, hardware or virtual chip, \
                            token model and serial, ECDHs, latency, errors, reconnects, PIN \
                            state)."
    )]
    Show {
        /// As JSON
        #[arg(long)]
        json: bool,
        /// One interface (default: every wg-pkcs11/userspace interface)
        #[arg(value_name = "INTERFACE")]
        interface: Option<String>,
    },
    /// List the token's X25519 keys: label, id, public key and the pkcs11: URI
    #[command(
        long_about = "List the X25519 keys of the token(s) URI names (default: every \
                            token of p11-kit's proxy): label, id, public key and the pkcs11: \
                            URI that opens it."
    )]
    List {
        /// The token(s) to list (default: every token of p11-kit's proxy)
        #[arg(value_name = "URI")]
        uri: Option<String>,
    },
    /// Switch the running interface to another token key and handshake at once
    #[command(
        long_about = "Switch the running interface to the token key URI names and \
                            handshake with every peer at once (key rotation; the config file is \
                            not changed)."
    )]
    Set {
        /// The running interface
        #[arg(value_name = "INTERFACE")]
        interface: String,
        /// What to set: private-key-uri
        #[arg(value_name = "SETTING", value_parser = PossibleValuesParser::new(["private-key-uri"]))]
        setting: String,
        /// The new key's pkcs11: URI
        #[arg(value_name = "URI")]
        uri: String,
    },
    /// Rotate the interface's token key without downtime
    #[command(
        long_about = "Rotate the interface's token key without downtime: a new key in \
                            the chip, its public key printed, the hook (or Enter) registers it \
                            with the server, switch and handshake, verify, rewrite FILE's \
                            PrivateKey (or its IFNAME.pkcs11 key file) atomically, and only \
                            then delete the old key. Rolls back to the old key on failure."
    )]
    Rotate(RotateArgs),
    /// Write the chip's attestation of a token key (evidence, JSON) to stdout
    #[command(
        long_about = "Write the chip's attestation of the token key URI names to stdout \
                            (evidence, JSON: the WireGuard key, the attested read as exchanged, \
                            the chip's certificates), answering the server's nonce \
                            (`wg-pkcs11 nonce`)."
    )]
    Attest(AttestArgs),
    /// (server) Verify a device's attestation evidence
    #[command(
        long_about = "Verify a device's attestation evidence (server side, no token \
                            needed). The nonce must come from `wg-pkcs11 nonce` and is used up. \
                            Without --root, NXP's shipped root is trusted; with --root, only \
                            the roots given. Prints the admitted WireGuard public key, then the \
                            chip id and what was verified."
    )]
    VerifyAttestation(VerifyArgs),
    /// (server) Verify the evidence, then add the device as a peer with `wg set`
    #[command(
        long_about = "Verify the evidence as verify-attestation does, then add the device \
                            as a peer with `wg set` (works on a kernel WireGuard server)."
    )]
    Admit(AdmitArgs),
    /// (server) Issue a single-use nonce for a device's attestation
    #[command(
        long_about = "Issue a single-use attestation nonce (hex), remembered in \
                            /var/lib/wg-pkcs11/nonces (or $WG_PKCS11_NONCE_DIR) until used or \
                            expired."
    )]
    Nonce(NonceArgs),
    /// Print the version (as --version)
    #[command(hide = true)]
    Version,
}

/// What `rotate` is told on its command line.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The running interface whose key is rotated
    #[arg(value_name = "INTERFACE")]
    pub ifname: String,
    /// The interface's config (default /etc/wireguard/IFNAME.conf): its PrivateKey URI names
    /// the old key, and it is rewritten to the new one
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub config: Option<String>,
    /// Label of the new key (default: the old label with the date and time)
    #[arg(long, value_name = "NEW")]
    pub label: Option<String>,
    /// Registers the new key with the server (`sh -c`); without it, wait for Enter on stdin
    #[arg(long, value_name = "CMD", value_hint = ValueHint::CommandString)]
    pub hook: Option<String>,
    /// Must succeed through the tunnel with the new key before the old key is deleted
    #[arg(long, value_name = "CMD", value_hint = ValueHint::CommandString)]
    pub check: Option<String>,
    /// Seconds to wait for the handshakes and the check
    #[arg(long = "timeout", value_name = "S", default_value = "30", value_parser = timeout_secs)]
    pub timeout_secs: u64,
}

fn timeout_secs(v: &str) -> Result<u64, String> {
    v.parse()
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| format!("--timeout `{v}` is not a number of seconds"))
}

#[derive(Debug, Args)]
pub struct AttestArgs {
    /// The token key's pkcs11: URI
    #[arg(value_name = "URI")]
    pub uri: String,
    /// The server's nonce (`wg-pkcs11 nonce`)
    #[arg(long, value_name = "HEX", required = true)]
    pub nonce: String,
}

/// `--nonce`, `--root`, `--nonce-dir`: what verify-attestation and admit share.
#[derive(Debug, Default, Args)]
pub struct VerifyArgs {
    /// The evidence file (- for stdin)
    #[arg(value_name = "EVIDENCE", value_hint = ValueHint::FilePath)]
    pub evidence: String,
    /// The nonce the device answered (from `wg-pkcs11 nonce`; used up)
    #[arg(long, value_name = "HEX", required = true)]
    pub nonce: Option<String>,
    /// A trusted root certificate (repeatable; default: NXP's shipped root)
    #[arg(long = "root", value_name = "PEM", value_hint = ValueHint::FilePath)]
    pub roots: Vec<PathBuf>,
    /// The nonce store (default /var/lib/wg-pkcs11/nonces or $WG_PKCS11_NONCE_DIR)
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub nonce_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AdmitArgs {
    /// The server's WireGuard interface
    #[arg(value_name = "INTERFACE")]
    pub ifname: String,
    #[command(flatten)]
    pub verify: VerifyArgs,
    /// The new peer's allowed-ips, as `wg set` takes them
    #[arg(long, value_name = "IPS", required = true)]
    pub allowed_ips: String,
    /// The new peer's endpoint
    #[arg(long, value_name = "HOST:PORT")]
    pub endpoint: Option<String>,
    /// The new peer's persistent keepalive (seconds)
    #[arg(long, value_name = "N")]
    pub persistent_keepalive: Option<String>,
}

#[derive(Debug, Args)]
pub struct NonceArgs {
    /// Seconds the nonce stays valid
    #[arg(long, value_name = "SECONDS", value_parser = ttl_secs)]
    pub ttl: Option<u64>,
    /// The nonce store (default /var/lib/wg-pkcs11/nonces or $WG_PKCS11_NONCE_DIR)
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub nonce_dir: Option<PathBuf>,
}

fn ttl_secs(v: &str) -> Result<u64, String> {
    v.parse()
        .ok()
        .filter(|&t| t > 0)
        .ok_or_else(|| format!("--ttl {v}: a number of seconds above 0"))
}

/// The whole definition as clap builds it, with every command's help starting with its usage.
pub fn command() -> clap::Command {
    Cli::command().mut_subcommands(|sub| sub.help_template(COMMAND_HELP_TEMPLATE))
}

/// `COMMAND ... help` has always shown COMMAND's help, as `COMMAND --help` does (a config or an
/// interface named `help` never could be named after a command): the word becomes the flag.
pub fn help_word_as_flag(mut args: Vec<String>) -> Vec<String> {
    let is_command = |name: &str| Cli::command().find_subcommand(name).is_some();
    if args
        .first()
        .is_some_and(|first| first != "help" && is_command(first))
    {
        for arg in args.iter_mut().skip(1).filter(|a| *a == "help") {
            *arg = "--help".into();
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let matches = command()
            .try_get_matches_from(std::iter::once("wg-pkcs11").chain(args.iter().copied()))?;
        Cli::from_arg_matches(&matches)
    }

    #[test]
    fn the_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn wg_quick_forms() {
        let cli = parse(&["wg0"]).unwrap();
        assert_eq!(
            (cli.interface.as_deref(), cli.foreground),
            (Some("wg0"), false)
        );
        let cli = parse(&["-f", "wg0"]).unwrap();
        assert_eq!(
            (cli.interface.as_deref(), cli.foreground),
            (Some("wg0"), true)
        );
        for args in [&["up", "-f", "wg0"][..], &["up", "wg0", "--foreground"]] {
            let Some(Command::Up { foreground, target }) = parse(args).unwrap().command else {
                panic!("{args:?}")
            };
            assert!(foreground && target.target == "wg0");
        }
        assert!(matches!(
            parse(&["down", "wg0"]).unwrap().command,
            Some(Command::Down(_))
        ));
        assert!(parse(&["up"]).is_err());
        assert!(parse(&["up", "a", "b"]).is_err());
        assert!(parse(&["wg0", "up"]).is_err());
        assert!(parse(&["-f"]).is_err());
    }

    #[test]
    fn rotate_options() {
        let Some(Command::Rotate(o)) = parse(&["rotate", "wg0", "--hook", "x", "--timeout", "5"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(
            (o.ifname.as_str(), o.hook.as_deref(), o.timeout_secs),
            ("wg0", Some("x"), 5)
        );
        let Some(Command::Rotate(o)) = parse(&["rotate", "wg0"]).unwrap().command else {
            panic!()
        };
        assert_eq!(o.timeout_secs, 30);
        assert!(parse(&["rotate"]).is_err());
        let zero = parse(&["rotate", "wg0", "--timeout", "0"])
            .unwrap_err()
            .to_string();
        assert!(
            zero.contains("--timeout `0` is not a number of seconds"),
            "{zero}"
        );
        assert!(parse(&["rotate", "wg0", "--bogus"]).is_err());
    }

    #[test]
    fn help_after_a_command_is_its_help() {
        let words = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(
            help_word_as_flag(words(&["up", "help"])),
            words(&["up", "--help"])
        );
        assert_eq!(
            help_word_as_flag(words(&["help", "up"])),
            words(&["help", "up"])
        );
        assert_eq!(help_word_as_flag(words(&["help"])), words(&["help"]));
        let help = parse(&["down", "--help"]).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
    }

    #[test]
    fn set_takes_only_private_key_uri() {
        assert!(parse(&["set", "wg0", "private-key-uri", "pkcs11:object=a"]).is_ok());
        assert!(parse(&["set", "wg0", "listen-port", "1"]).is_err());
    }

    #[test]
    fn evidence_may_be_stdin() {
        let Some(Command::VerifyAttestation(v)) = parse(&[
            "verify-attestation",
            "-",
            "--nonce",
            "00",
            "--root",
            "a",
            "--root",
            "b",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!((v.evidence.as_str(), v.roots.len()), ("-", 2));
        assert!(
            parse(&["attest", "pkcs11:object=a"]).is_err(),
            "--nonce is required"
        );
        let ttl = parse(&["nonce", "--ttl", "0"]).unwrap_err().to_string();
        assert!(ttl.contains("a number of seconds above 0"), "{ttl}");
    }
}
