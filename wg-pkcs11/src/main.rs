//! `wg-pkcs11`: a WireGuard interface whose static key may live in a PKCS#11 token.
//!
//! ```text
//! wg-pkcs11 up [-f] IFNAME|CONF    bring up the interface (detach once up; -f: stay in front)
//! wg-pkcs11 down|save|strip IFNAME|CONF   as wg-quick
//! wg-pkcs11 [-f] IFNAME           as `wireguard-go IFNAME`, for stock wg-quick
//! wg-pkcs11 genkey URI            create an X25519 key pair in the token, print its public key
//! wg-pkcs11 pubkey [URI]          print the public key of a token key (or of a base64 key)
//! wg-pkcs11 show [--json] [IFNAME] what `wg show` says, plus the public key and key health
//! wg-pkcs11 list [URI]           the token's X25519 keys, each with its pkcs11: URI
//! wg-pkcs11 set IFNAME private-key-uri URI | rotate IFNAME   key rotation
//! wg-pkcs11 attest URI --nonce HEX | verify-attestation | admit | nonce   attestation
//! ```

mod cli;

use std::process::ExitCode;

const USAGE: &str = "\
Usage: wg-pkcs11 [ up | down | save | strip ] [ CONFIG_FILE | INTERFACE ]
       wg-pkcs11 [ -f | --foreground ] INTERFACE
       wg-pkcs11 [ genkey URI | pubkey [URI] | show [INTERFACE] | --version | --help ]

A WireGuard daemon whose private key lives in a PKCS#11 token (e.g. an NXP SE050), used like
wg-quick. INTERFACE means /etc/wireguard/INTERFACE.conf; PrivateKey may be a pkcs11: URI, or
be left out and the URI kept in /etc/wireguard/INTERFACE.pkcs11.

Commands:
  up [-f] CONF      Bring up the interface: PreUp, the device, addresses, MTU, routes, DNS,
                    PostUp. Returns once it is up; the daemon runs on until `down`, SIGTERM,
                    or the interface is deleted. SIGHUP re-reads CONF as `wg syncconf` does.
                    -f, --foreground: stay in the foreground (for service managers).
  down CONF         Take the interface down (its daemon runs PreDown, PostDown).
  save CONF         Write the running peers, port and fwmark into CONF, keeping PrivateKey.
  strip CONF        Print CONF for `wg setconf` / `wg syncconf` (no wg-quick keys, no URI).
  [-f] INTERFACE    Userspace-implementation mode, as `wireguard-go INTERFACE`: create the
                    interface and wait for `wg setconf`. For stock wg-quick:
                    WG_QUICK_USERSPACE_IMPLEMENTATION=wg-pkcs11 wg-quick up INTERFACE
  genkey URI        Generate an X25519 key pair in the token named by URI (object=LABEL and/or
                    id=ID name the new key) and print its public key in base64.
  pubkey [URI]      Print the base64 public key of the token key named by URI; without URI,
                    read a base64 private key on stdin like `wg pubkey`.
  set IFNAME private-key-uri URI
                    Switch the running interface to the token key URI names and handshake with
                    every peer at once (key rotation; the config file is not changed).
  rotate IFNAME [--config FILE] [--label NEW] [--hook CMD] [--check CMD] [--timeout S]
                    Rotate the interface's token key without downtime: a new key in the chip,
                    its public key printed, the hook (or Enter) registers it with the server,
                    switch and handshake, verify, rewrite FILE's PrivateKey (or its IFNAME.pkcs11
                    key file) atomically, and only then delete the old key. Rolls back to the
                    old key on failure.
  attest URI --nonce HEX
                    Write the chip's attestation of the token key URI names (evidence, JSON)
                    to stdout, answering the server's nonce.
  nonce [--ttl S]   (server) Issue a single-use nonce for a device's attestation.
  verify-attestation EVIDENCE --nonce HEX [--root PEM]...
                    (server) Verify evidence: print the admitted WireGuard key, the chip id
                    and each check; or fail with the reason. NXP's root unless --root.
  admit IFNAME EVIDENCE --nonce HEX --allowed-ips IPS [--endpoint E]
                    (server) Verify, then `wg set IFNAME peer KEY allowed-ips IPS`.
  list [URI]        List the X25519 keys of the token(s) URI names (default: every token of
                    p11-kit's proxy): label, id, public key and the pkcs11: URI that opens it.
  show [--json] [IFNAME]
                    Show the state of one interface, or of every wg-pkcs11/userspace interface,
                    with the key's health (URI, hardware or virtual chip, token model and
                    serial, ECDHs, latency, errors, reconnects, PIN state); --json: as JSON.
  --version         Print the version.
  help, --help      This text; `COMMAND --help` for one command.

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

/// One line of help per command, for `COMMAND --help`.
fn command_help(command: &str) -> Option<&'static str> {
    Some(match command {
        "up" => {
            "Usage: wg-pkcs11 up [-f|--foreground] [ CONFIG_FILE | INTERFACE ]\n\n\
                 Bring up the interface and return once it is up (the daemon runs on). With\n\
                 --foreground, run in the foreground until SIGINT/SIGTERM (for systemd).\n\
                 SIGHUP re-reads the config and applies peer changes as `wg syncconf` does."
        }
        "down" => {
            "Usage: wg-pkcs11 down [ CONFIG_FILE | INTERFACE ]\n\n\
                   Take the interface down (saving it first if SaveConfig = true)."
        }
        "save" => {
            "Usage: wg-pkcs11 save [ CONFIG_FILE | INTERFACE ]\n\n\
                   Save the running peers, listen port and fwmark into the config, keeping\n\
                   its [Interface] lines (PrivateKey included)."
        }
        "strip" => {
            "Usage: wg-pkcs11 strip [ CONFIG_FILE | INTERFACE ]\n\n\
                    Print the config as `wg setconf` reads it: without wg-quick's keys and\n\
                    without a pkcs11: PrivateKey (the daemon keeps its key)."
        }
        "genkey" => {
            "Usage: wg-pkcs11 genkey URI\n\n\
                     Generate an X25519 key pair in the token, print its public key."
        }
        "pubkey" => {
            "Usage: wg-pkcs11 pubkey [URI]\n\n\
                     Print the public key of the token key named by URI (or of a base64\n\
                     private key read on stdin)."
        }
        "show" => {
            "Usage: wg-pkcs11 show [--json] [INTERFACE]\n\n\
                   Show the interface's state, with its public key and the key's health."
        }
        "list" => {
            "Usage: wg-pkcs11 list [URI]\n\n\
                   List the token's X25519 keys: label, id, public key and the pkcs11: URI."
        }
        "set" => {
            "Usage: wg-pkcs11 set INTERFACE private-key-uri URI\n\n\
                  Switch the running interface to another token key and handshake at once."
        }
        "rotate" => {
            "Usage: wg-pkcs11 rotate INTERFACE [--config FILE] [--label NEW] [--hook CMD]\n\
                     [--check CMD] [--timeout S]\n\n\
                     Rotate the interface's token key without downtime (see the README)."
        }
        "attest" => {
            "Usage: wg-pkcs11 attest URI --nonce HEX\n\n\
                 Write the chip's attestation of the token key URI names to stdout (evidence,\n\
                 JSON: the WireGuard key, the attested read as exchanged, the chip's\n\
                 certificates), answering the server's nonce (`wg-pkcs11 nonce`)."
        }
        "verify-attestation" => {
            "Usage: wg-pkcs11 verify-attestation EVIDENCE --nonce HEX [--root PEM]...\n\
                 [--nonce-dir DIR]\n\n\
                 Verify a device's attestation evidence (server side, no token needed). The\n\
                 nonce must come from `wg-pkcs11 nonce` and is used up. Without --root, NXP's\n\
                 shipped root is trusted; with --root, only the roots given. Prints the\n\
                 admitted WireGuard public key, then the chip id and what was verified."
        }
        "admit" => {
            "Usage: wg-pkcs11 admit INTERFACE EVIDENCE --nonce HEX --allowed-ips IPS\n\
                 [--endpoint HOST:PORT] [--persistent-keepalive N] [--root PEM]...\n\n\
                 Verify the evidence as verify-attestation does, then add the device as a\n\
                 peer with `wg set` (works on a kernel WireGuard server)."
        }
        "nonce" => {
            "Usage: wg-pkcs11 nonce [--ttl SECONDS] [--nonce-dir DIR]\n\n\
                 Issue a single-use attestation nonce (hex), remembered in\n\
                 /var/lib/wg-pkcs11/nonces (or $WG_PKCS11_NONCE_DIR) until used or expired."
        }
        _ => return None,
    })
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("wg-pkcs11: {message}\n\n{USAGE}");
    // wg-quick's exit status for a usage error, as for every failure.
    ExitCode::FAILURE
}

fn is_help(arg: &str) -> bool {
    matches!(arg, "--help" | "-h" | "help")
}

fn is_foreground(arg: &str) -> bool {
    matches!(arg, "-f" | "--foreground")
}

fn main() -> ExitCode {
    cli::logging::init();
    // std::env::args() would panic on an argument that is not UTF-8.
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(std::ffi::OsString::into_string)
        .collect();
    let args = match args {
        Ok(args) => args,
        Err(bad) => return usage_error(&format!("argument {bad:?} is not valid UTF-8")),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let [command, rest @ ..] = args.as_slice() {
        if rest.iter().any(|a| is_help(a)) {
            if let Some(help) = command_help(command) {
                println!("{help}");
                return ExitCode::SUCCESS;
            }
        }
    }
    let result = match args.as_slice() {
        [] => return usage_error("no command given"),
        [help] if is_help(help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        ["--version" | "-V" | "version"] => {
            println!("wg-pkcs11 {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        ["up", target] => cli::up::run(target, false),
        ["up", f, target] | ["up", target, f] if is_foreground(f) => cli::up::run(target, true),
        ["up", ..] => return usage_error("`up` takes one config file or interface name (and -f)"),
        ["down", target] => cli::quick::down(target),
        ["save", target] => cli::quick::save(target),
        ["strip", target] => cli::quick::strip(target),
        ["down" | "save" | "strip", ..] => {
            return usage_error("down, save and strip take one config file or interface name")
        }
        ["genkey", uri] => cli::keys::genkey(uri),
        ["genkey", ..] => return usage_error("`genkey` takes exactly one argument: a pkcs11: URI"),
        ["pubkey"] => cli::keys::pubkey_from_stdin(),
        ["pubkey", uri] => cli::keys::pubkey(uri),
        ["pubkey", ..] => return usage_error("`pubkey` takes at most one argument: a pkcs11: URI"),
        ["set", ifname, "private-key-uri", uri] => cli::rotate::set_private_key_uri(ifname, uri),
        ["rotate", rest @ ..] => match cli::rotate::parse_rotate_args(rest) {
            Ok(options) => cli::rotate::rotate(&options),
            Err(e) => return usage_error(&e),
        },
        ["attest", rest @ ..] => cli::attest::run(rest),
        ["verify-attestation", rest @ ..] => cli::verify_attestation::run(rest),
        ["admit", rest @ ..] => cli::admit::run(rest),
        ["nonce", rest @ ..] => cli::nonce::run(rest),
        ["list"] => cli::list::run(None),
        ["list", uri] => cli::list::run(Some(uri)),
        ["list", ..] => return usage_error("`list` takes at most one argument: a pkcs11: URI"),
        ["show", "--json"] => cli::show_health::show_all_json(),
        ["show", "--json", ifname] | ["show", ifname, "--json"] => {
            cli::show_health::show_json(ifname)
        }
        ["show"] => cli::show::show_all(),
        ["show", ifname] => cli::show::show(ifname),
        ["show", ..] => return usage_error("`show` takes at most one argument: an interface name"),
        [f, ifname] if is_foreground(f) => cli::userspace::run(ifname, true),
        [ifname] if !ifname.starts_with('-') && cli::keyfile::is_interface_name(ifname) => {
            cli::userspace::run(ifname, false)
        }
        [other, ..] => return usage_error(&format!("unknown command `{other}`")),
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
