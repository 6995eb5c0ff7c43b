//! Tests only: checks the chip's signatures and certificates with an implementation outside
//! this crate, Python's `cryptography` package (Debian: python3-cryptography, installed by
//! scripts/install-deps). A missing package fails the test loudly.

use std::io::Write;
use std::process::{Command, Stdio};

const VERIFIER: &str = r#"
import sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils
kind = sys.argv[1]
a, b, c = (bytes.fromhex(x) for x in sys.stdin.read().split())
try:
    if kind.startswith("ecdsa-prehash-"):
        algorithm = {"sha1": hashes.SHA1(), "sha224": hashes.SHA224(), "sha256": hashes.SHA256(),
                     "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[kind[14:]]
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), a).verify(
            c, b, ec.ECDSA(utils.Prehashed(algorithm)))
    elif kind == "ecdsa-sha256":
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), a).verify(
            c, b, ec.ECDSA(hashes.SHA256()))
    elif kind == "ed25519":
        ed25519.Ed25519PublicKey.from_public_bytes(a).verify(c, b)
    elif kind == "chain":
        root = x509.load_pem_x509_certificate(a)
        leaf = x509.load_der_x509_certificate(b)
        root.verify_directly_issued_by(root)
        leaf.verify_directly_issued_by(root)
        point = leaf.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        print(point.hex())
    else:
        sys.exit("unknown kind " + kind)
except Exception as e:
    print("INVALID", type(e).__name__, e, file=sys.stderr)
    sys.exit(1)
"#;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the verifier; `Ok(stdout)` when it accepts, `Err(stderr)` when it refuses.
fn run(kind: &str, a: &[u8], b: &[u8], c: &[u8]) -> Result<String, String> {
    let mut child = Command::new("python3")
        .args(["-c", VERIFIER, kind])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (scripts/install-deps)");
    // "00" stands for an empty value (split() would drop an empty field).
    let field = |v: &[u8]| if v.is_empty() { String::new() } else { hex(v) };
    let input = format!("{} {} {}\n", field(a), field(b), field(c));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "python3-cryptography is missing (scripts/install-deps): {stderr}"
    );
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(stderr)
    }
}

/// Whether `signature` (DER) is a valid ECDSA P-256 signature of the 32-byte `hash`.
pub fn ecdsa_prehash_valid(public: &[u8], hash: &[u8], signature: &[u8]) -> bool {
    ecdsa_prehash_valid_with("sha256", public, hash, signature)
}

/// The same for a hash of the algorithm `hash_name` (sha1, sha224, sha256, sha384, sha512).
pub fn ecdsa_prehash_valid_with(
    hash_name: &str,
    public: &[u8],
    hash: &[u8],
    signature: &[u8],
) -> bool {
    run(
        &format!("ecdsa-prehash-{hash_name}"),
        public,
        hash,
        signature,
    )
    .is_ok()
}

/// Whether `signature` (DER) is a valid ECDSA P-256 / SHA-256 signature of `message`.
pub fn ecdsa_sha256_valid(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    run("ecdsa-sha256", public, message, signature).is_ok()
}

/// Whether `signature` (RFC 8032 order) is a valid Ed25519 signature of a non-empty `message`.
pub fn ed25519_valid(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    assert!(!message.is_empty());
    run("ed25519", public, message, signature).is_ok()
}

/// Checks that `certificate` (DER) was issued by the self-signed `root_pem`; its public point.
pub fn chain_public_key(root_pem: &str, certificate: &[u8]) -> Result<Vec<u8>, String> {
    let point = run("chain", root_pem.as_bytes(), certificate, b"-")?;
    Ok((0..point.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&point[i..i + 2], 16).unwrap())
        .collect())
}

/// Whether `openssl verify -x509_strict` accepts `certificate` (DER) under `root_pem`.
pub fn openssl_verifies(root_pem: &str, certificate: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.pem");
    let leaf = dir.path().join("leaf.der");
    std::fs::write(&root, root_pem).unwrap();
    std::fs::write(&leaf, certificate).unwrap();
    let pem = dir.path().join("leaf.pem");
    let converted = Command::new("openssl")
        .args(["x509", "-inform", "der", "-in"])
        .arg(&leaf)
        .arg("-out")
        .arg(&pem)
        .status()
        .expect("openssl must be installed");
    assert!(converted.success());
    Command::new("openssl")
        .args(["verify", "-x509_strict", "-CAfile"])
        .arg(&root)
        .arg(&pem)
        .output()
        .expect("openssl must be installed")
        .status
        .success()
}
