//! `wg-pkcs11`: a WireGuard interface whose static key may live in a PKCS#11 token.
//!
//! ```text
//! wg-pkcs11 up CONF          run the interface of CONF (wg-quick format) in the foreground
//! wg-pkcs11 genkey URI       create an X25519 key pair in the token, print its public key
//! wg-pkcs11 pubkey [URI]     print the public key of a token key (or of a base64 key on stdin)
//! wg-pkcs11 list [URI]      the token's X25519 keys, each with its pkcs11: URI
//! wg-pkcs11 show [IFNAME]    what `wg show` says, plus the interface's public key
//! ```

mod cli;

use std::process::ExitCode;

const USAGE: &str = "\
Usage: wg-pkcs11 <command> [arguments]

A WireGuard daemon whose private key may live in a PKCS#11 token (e.g. an NXP SE050).

Commands:
  up CONF           Bring up the interface described by CONF (wg-quick format; the interface
                    is named after the file: /etc/wireguard/wg0.conf -> wg0) and run it in the
                    foreground until SIGINT/SIGTERM or until its UAPI socket is removed.
                    PrivateKey may be base64 or a pkcs11: URI (RFC 7512).
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
                    switch and handshake, verify, rewrite FILE's PrivateKey atomically, and
                    only then delete the old key. Rolls back to the old key on failure.
  list [URI]        List the X25519 keys of the token(s) URI names (default: every token of
                    p11-kit's proxy): label, id, public key and the pkcs11: URI that opens it.
  show [--json] [IFNAME]
                    Show the state of one interface, or of every wg-pkcs11/userspace interface,
                    with the key's health (URI, hardware or virtual chip, token model and
                    serial, ECDHs, latency, errors, reconnects, PIN state); --json: as JSON.
  help, --help      This text.

URI examples:
  pkcs11:token=SE050;object=wg-key;type=private?module-name=pkcs11_se050
  pkcs11:object=wg-key?module-name=pkcs11-se050&pin-source=/etc/wireguard/pin

Logging: RUST_LOG=debug|info|warn (default info).";

fn usage_error(message: &str) -> ExitCode {
    eprintln!("wg-pkcs11: {message}\n\n{USAGE}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
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
    let result = match args.as_slice() {
        [] => return usage_error("no command given"),
        ["help" | "--help" | "-h", ..] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        ["up", conf] => cli::up::run(std::path::Path::new(conf)),
        ["up", ..] => return usage_error("`up` takes exactly one argument: the config file"),
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
        [other, ..] => return usage_error(&format!("unknown command `{other}`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wg-pkcs11: {message}");
            ExitCode::FAILURE
        }
    }
}
