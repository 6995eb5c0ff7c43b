//! `wg-pkcs11 list`: every X25519 key of the chip, each with a URI that opens that same key.
//!
//! Keys made three ways (wg-pkcs11 genkey with a label, pkcs11-tool with an id only, and two
//! pkcs11-tool keys sharing one label, told apart only by their ids); each URI `list` prints is
//! given back to `wg-pkcs11 pubkey`, which must print the public key `list` printed next to it,
//! and the set of keys must be exactly the ones generated.

use std::collections::BTreeSet;
use std::process::Command;

use e2e_tests::*;

fn run(token: &VirtualToken, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(wg_pkcs11_binary());
    command.args(args);
    token.apply(&mut command);
    let out = command.output().expect("cannot run wg-pkcs11");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// pkcs11-tool --keypairgen on the test's chip; returns the public key (base64).
fn pkcs11_tool_keypair(token: &VirtualToken, extra: &[&str]) {
    let mut command = Command::new("pkcs11-tool");
    command
        .arg("--module")
        .arg(module_path())
        .args([
            "--keypairgen",
            "--key-type",
            "EC:curve25519",
            "--usage-derive",
        ])
        .args(extra);
    token.apply(&mut command);
    let out = command
        .output()
        .expect("cannot run pkcs11-tool (install opensc)");
    assert!(
        out.status.success(),
        "pkcs11-tool {extra:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (label, id, public key, uri) of each key block `list` printed.
fn parse_listing(text: &str) -> Vec<(String, String, String, String)> {
    let mut keys = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let field = |name: &str| {
            block
                .lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("no `{name}:` in the block\n{block}"))
                .to_string()
        };
        keys.push((field("key"), field("id"), field("public key"), field("uri")));
    }
    keys
}

#[test]
fn every_listed_uri_opens_the_key_it_is_listed_with() {
    let token = VirtualToken::new(0);
    let mut generated = BTreeSet::new();
    generated.insert(wg_pkcs11_genkey(&token, "wg-2025"));
    generated.insert(wg_pkcs11_genkey(&token, "wg-2026"));
    pkcs11_tool_keypair(&token, &["--id", "10000042"]);
    pkcs11_tool_keypair(&token, &["--label", "twin", "--id", "01"]);
    pkcs11_tool_keypair(&token, &["--label", "twin", "--id", "02"]);

    let query = format!("pkcs11:token=SE050?module-path={}", module_path().display());
    let (ok, stdout, stderr) = run(&token, &["list", &query]);
    assert!(ok, "list failed:\n{stdout}\n{stderr}");
    let keys = parse_listing(&stdout);
    assert_eq!(keys.len(), 5, "five keys expected:\n{stdout}");

    let mut listed = BTreeSet::new();
    for (label, id, public, uri) in &keys {
        assert!(
            uri.starts_with("pkcs11:") && uri.contains("type=private"),
            "{uri}"
        );
        assert!(
            !uri.contains("pin-value"),
            "a listing must not carry a PIN: {uri}"
        );
        // The round trip: the printed URI, as it is, opens the key printed with it.
        let (ok, again, err) = run(&token, &["pubkey", uri]);
        assert!(
            ok,
            "`wg-pkcs11 pubkey {uri}` failed (listed as {label} {id}): {err}"
        );
        assert_eq!(again.trim(), public, "{uri} opens another key than listed");
        listed.insert(public.clone());
    }
    assert_eq!(
        listed.len(),
        5,
        "two listed keys share a public key:\n{stdout}"
    );
    assert!(
        generated.is_subset(&listed),
        "a key wg-pkcs11 genkey made is missing:\n{stdout}"
    );
    let labels: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    for label in ["wg-2025", "wg-2026", "twin"] {
        assert!(labels.contains(&label), "{label} not listed:\n{stdout}");
    }
    let ids: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    for id in ["10000042", "01", "02"] {
        assert!(ids.contains(&id), "id {id} not listed:\n{stdout}");
    }

    // A query narrowed to one label lists just that key.
    let one = format!(
        "pkcs11:token=SE050;object=wg-2026?module-path={}",
        module_path().display()
    );
    let (ok, stdout, stderr) = run(&token, &["list", &one]);
    assert!(ok, "{stderr}");
    let keys = parse_listing(&stdout);
    assert_eq!(keys.len(), 1, "{stdout}");
    assert_eq!(keys[0].0, "wg-2026");

    // A bad URI is named in the error.
    let (ok, _, stderr) = run(&token, &["list", "pkcs11:token=SE050;bogus=1"]);
    assert!(!ok && stderr.contains("bogus"), "{stderr}");
}
