//! P-256, Ed25519 and certificates (issue 22) through the built module on the virtual SE050:
//! cryptoki 0.12 (a Rust application), OpenSC 0.23's pkcs11-tool and ssh-keygen (OpenSSH 9.2),
//! every signature checked by OpenSSL (an outside implementation) and by RustCrypto / dalek,
//! every P-256 shared secret compared with RustCrypto's. Each test has its own chip.
//!
//! Needs a virtual chip with P-256 and Ed25519 (se050-sim, issue 22's chip side).

#[path = "pkcs11_harness.rs"]
mod harness;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::Session;
use harness::{isolated, module_path, TestChip};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const OID_P256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x70];

/// The module initialised in this (test's own) process, and a read-write session on its token.
fn rw_session() -> Session {
    let pkcs11 = Pkcs11::new(module_path()).expect("load the module");
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    let slot = pkcs11.get_slots_with_token().unwrap()[0];
    pkcs11.open_rw_session(slot).unwrap()
}

fn rv<T>(r: Result<T, Error>) -> RvError {
    match r {
        Err(Error::Pkcs11(rv, _)) => rv,
        Err(other) => panic!("not a PKCS#11 error: {other}"),
        Ok(_) => panic!("succeeded"),
    }
}

fn generate(
    session: &Session,
    mechanism: Mechanism,
    params: &[u8],
    id: u8,
) -> (ObjectHandle, ObjectHandle) {
    session
        .generate_key_pair(
            &mechanism,
            &[
                Attribute::Token(true),
                Attribute::EcParams(params.to_vec()),
                Attribute::Verify(true),
                Attribute::Id(vec![id]),
            ],
            &[
                Attribute::Token(true),
                Attribute::Sign(true),
                Attribute::Sensitive(true),
                Attribute::Id(vec![id]),
            ],
        )
        .expect("generate")
}

fn attribute(session: &Session, object: ObjectHandle, t: AttributeType) -> Vec<u8> {
    match session.get_attributes(object, &[t]).unwrap().remove(0) {
        Attribute::EcPoint(v)
        | Attribute::PublicKeyInfo(v)
        | Attribute::Value(v)
        | Attribute::EcParams(v) => v,
        other => panic!("{other:?}"),
    }
}

fn run(command: &mut Command) -> Output {
    let out = command.output().expect("run a tool");
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The public key as a PEM file OpenSSL reads, from CKA_PUBLIC_KEY_INFO.
fn openssl_public(dir: &Path, spki: &[u8], name: &str) -> PathBuf {
    let der = dir.join(format!("{name}.der"));
    std::fs::write(&der, spki).unwrap();
    let pem = dir.join(format!("{name}.pem"));
    der_public_key_to_pem(&der, &pem);
    pem
}

/// A DER SubjectPublicKeyInfo file as PEM, by OpenSSL.
fn der_public_key_to_pem(der: &Path, pem: &Path) {
    run(Command::new("openssl")
        .args(["pkey", "-pubin", "-inform", "DER", "-in"])
        .arg(der)
        .arg("-out")
        .arg(pem));
}

/// OpenSC's pkcs11-tool with the built module on the chip `conf` configures; must succeed.
fn pkcs11_tool(conf: &Path, args: &[&str]) -> Output {
    run(Command::new("pkcs11-tool")
        .arg("--module")
        .arg(module_path())
        .args(args)
        .env("PKCS11_SE050_CONF", conf))
}

/// `ssh-keygen -D`: the public keys OpenSSH finds through the module, as authorized_keys lines.
fn ssh_keygen_list(conf: &Path) -> Output {
    run(Command::new("ssh-keygen")
        .arg("-D")
        .arg(module_path())
        .env("PKCS11_SE050_CONF", conf))
}

/// A self-signed P-256 certificate (CN=device) made by OpenSSL in `dir`: its DER file.
fn self_signed_certificate(dir: &Path) -> PathBuf {
    let (key, cert) = (dir.join("k.pem"), dir.join("c.der"));
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=device",
            "-days",
            "30",
            "-outform",
            "DER",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    cert
}

#[test]
fn p256_signatures_verify_with_openssl_and_rustcrypto() {
    isolated(
        "p256_signatures_verify_with_openssl_and_rustcrypto",
        "",
        |conf, _| {
            let session = rw_session();
            let (public, private) = generate(&session, Mechanism::EccKeyPairGen, OID_P256, 1);
            let point = attribute(&session, public, AttributeType::EcPoint);
            assert_eq!(
                &point[..3],
                &[0x04, 0x41, 0x04],
                "DER OCTET STRING of an uncompressed point"
            );
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point[2..]).unwrap();
            let dir = conf.parent().unwrap();
            let pem = openssl_public(
                dir,
                &attribute(&session, public, AttributeType::PublicKeyInfo),
                "p256",
            );
            for (i, message) in [&b"a log line"[..], &[0u8; 1000][..], b""]
                .iter()
                .enumerate()
            {
                let raw = session
                    .sign(&Mechanism::EcdsaSha256, private, message)
                    .unwrap();
                assert_eq!(raw.len(), 64);
                let signature = p256::ecdsa::Signature::from_slice(&raw).unwrap();
                use p256::ecdsa::signature::Verifier;
                key.verify(message, &signature)
                    .expect("RustCrypto verifies");
                let (msg, sig) = (dir.join(format!("m{i}")), dir.join(format!("s{i}")));
                std::fs::write(&msg, message).unwrap();
                std::fs::write(
                    &sig,
                    pkcs11_se050::applet::sign::raw_signature_to_der(&raw.try_into().unwrap()),
                )
                .unwrap();
                run(Command::new("openssl")
                    .args(["dgst", "-sha256", "-verify"])
                    .arg(&pem)
                    .arg("-signature")
                    .arg(&sig)
                    .arg(&msg));
            }
            // CKM_ECDSA: NIST's hash of "abc" signed as given.
            let digest: [u8; 32] = {
                use sha2::Digest;
                sha2::Sha256::digest(b"abc").into()
            };
            let raw = session.sign(&Mechanism::Ecdsa, private, &digest).unwrap();
            use p256::ecdsa::signature::hazmat::PrehashVerifier;
            key.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&raw).unwrap())
                .unwrap();
        },
    );
}

#[test]
fn ed25519_signatures_verify_with_openssl_and_dalek() {
    isolated(
        "ed25519_signatures_verify_with_openssl_and_dalek",
        "",
        |conf, _| {
            let session = rw_session();
            let (public, private) =
                generate(&session, Mechanism::EccEdwardsKeyPairGen, OID_ED25519, 2);
            let point = attribute(&session, public, AttributeType::EcPoint);
            assert_eq!(&point[..2], &[0x04, 0x20]);
            let key =
                ed25519_dalek::VerifyingKey::from_bytes(&point[2..].try_into().unwrap()).unwrap();
            let dir = conf.parent().unwrap();
            let pem = openssl_public(
                dir,
                &attribute(&session, public, AttributeType::PublicKeyInfo),
                "ed",
            );
            let message = b"RFC 8032 PureEdDSA through the chip";
            let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
            let signature = session.sign(&mechanism, private, message).unwrap();
            key.verify_strict(
                message,
                &ed25519_dalek::Signature::from_slice(&signature).unwrap(),
            )
            .expect("dalek verifies");
            let (msg, sig) = (dir.join("m"), dir.join("s"));
            std::fs::write(&msg, message).unwrap();
            std::fs::write(&sig, &signature).unwrap();
            run(Command::new("openssl")
                .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
                .arg(&pem)
                .arg("-in")
                .arg(&msg)
                .arg("-sigfile")
                .arg(&sig));
            // Too long for one APDU: refused by the module, before the chip.
            let long = vec![0u8; 877];
            assert_eq!(
                rv(session.sign(&mechanism, private, &long)),
                RvError::DataLenRange
            );
        },
    );
}

#[test]
fn p256_ecdh_equals_rustcrypto_and_wrong_keys_are_refused() {
    isolated(
        "p256_ecdh_equals_rustcrypto_and_wrong_keys_are_refused",
        "",
        |_, _| {
            let session = rw_session();
            let (public, private) = generate(&session, Mechanism::EccKeyPairGen, OID_P256, 3);
            let (_, ed_private) =
                generate(&session, Mechanism::EccEdwardsKeyPairGen, OID_ED25519, 4);
            let ours = p256::PublicKey::from_sec1_bytes(
                &attribute(&session, public, AttributeType::EcPoint)[2..],
            )
            .unwrap();
            let peer = p256::SecretKey::random(&mut rand_core::OsRng);
            let peer_point = peer.public_key().to_encoded_point(false);
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(cryptoki::object::KeyType::GENERIC_SECRET),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
            ];
            let params = Ecdh1DeriveParams::new(EcKdf::null(), peer_point.as_bytes());
            let secret = session
                .derive_key(&Mechanism::Ecdh1Derive(params), private, &template)
                .unwrap();
            let theirs = p256::ecdh::diffie_hellman(peer.to_nonzero_scalar(), ours.as_affine());
            assert_eq!(
                attribute(&session, secret, AttributeType::Value),
                theirs.raw_secret_bytes().to_vec()
            );
            let params = Ecdh1DeriveParams::new(EcKdf::null(), peer_point.as_bytes());
            assert_eq!(
                rv(session.derive_key(&Mechanism::Ecdh1Derive(params), ed_private, &template)),
                RvError::KeyTypeInconsistent
            );
            assert_eq!(
                rv(session.sign(&Mechanism::Ecdsa, private, &[0; 65])),
                RvError::DataLenRange
            );
            assert_eq!(
                rv(session.sign(&Mechanism::Ecdsa, ed_private, &[0; 32])),
                RvError::KeyTypeInconsistent
            );
            let p384 = [0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];
            assert_eq!(
                rv(session.generate_key_pair(
                    &Mechanism::EccKeyPairGen,
                    &[Attribute::EcParams(p384.to_vec())],
                    &[]
                )),
                RvError::CurveNotSupported
            );
        },
    );
}

/// OpenSC 0.23's pkcs11-tool on a token with a user PIN: key generation by curve name,
/// signing (checked by OpenSSL), its own test suites, a certificate written and read back;
/// ssh-keygen -D (OpenSSH 9.2, no PIN) lists the P-256 key: everyone may read public keys.
#[test]
fn pkcs11_tool_and_ssh_keygen_use_the_ec_keys() {
    let chip = TestChip::new("");
    let tool = |args: &[&str]| -> String {
        let out = pkcs11_tool(
            &chip.conf,
            &[&["--login", "--pin", "123456"], args].concat(),
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    pkcs11_tool(
        &chip.conf,
        &["--init-token", "--so-pin", "87654321", "--label", "e2e"],
    );
    pkcs11_tool(
        &chip.conf,
        &[
            "--init-pin",
            "--login",
            "--login-type",
            "so",
            "--so-pin",
            "87654321",
            "--pin",
            "123456",
        ],
    );
    let dir = chip.dir.path();
    let p256 = [
        "--keypairgen",
        "--key-type",
        "EC:prime256v1",
        "--id",
        "10",
        "--label",
        "tls",
    ];
    tool(&p256);
    // pkcs11-tool 0.23 asks for CKA_DERIVE on EC keys unless told the usage: an Ed25519 key
    // only signs, and the module says so rather than report a flag it ignores.
    let ed = [
        "--keypairgen",
        "--key-type",
        "EC:edwards25519",
        "--usage-sign",
        "--id",
        "11",
    ];
    tool(&ed);
    let objects = tool(&["-O"]);
    assert!(objects.contains("EC_POINT 256 bits"), "{objects}");
    // A signature from pkcs11-tool, verified by OpenSSL.
    let (msg, sig, pubkey) = (dir.join("msg"), dir.join("sig"), dir.join("pub.der"));
    std::fs::write(&msg, b"signed by pkcs11-tool").unwrap();
    let sign = [
        "--sign",
        "--id",
        "10",
        "-m",
        "ECDSA-SHA256",
        "--signature-format",
        "openssl",
    ];
    tool(
        &[
            &sign[..],
            &["-i", msg.to_str().unwrap(), "-o", sig.to_str().unwrap()],
        ]
        .concat(),
    );
    tool(&[
        "--read-object",
        "--type",
        "pubkey",
        "--id",
        "10",
        "-o",
        pubkey.to_str().unwrap(),
    ]);
    run(Command::new("openssl")
        .args(["dgst", "-sha256", "-keyform", "DER", "-verify"])
        .arg(&pubkey)
        .arg("-signature")
        .arg(&sig)
        .arg(&msg));
    // A certificate linked to the key by CKA_ID, written and read back byte for byte.
    let (cert, back) = (self_signed_certificate(dir), dir.join("back.der"));
    let c = cert.to_str().unwrap();
    tool(&[
        "--write-object",
        c,
        "--type",
        "cert",
        "--id",
        "10",
        "--label",
        "tls",
    ]);
    tool(&[
        "--read-object",
        "--type",
        "cert",
        "--id",
        "10",
        "-o",
        back.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&cert).unwrap());
    // pkcs11-tool's own tests (0.23's --test signs only with RSA: "not implemented" here).
    let test = tool(&["--test"]);
    assert!(test.contains("No errors"), "{test}");
    let test_ec = tool(&[
        "--session-rw",
        "--test-ec",
        "--id",
        "20",
        "--key-type",
        "EC:prime256v1",
    ]);
    assert!(!test_ec.contains("ERR"), "{test_ec}");
    // OpenSSH 9.2 lists the P-256 key (its ssh-pkcs11 takes RSA and ECDSA keys, not Ed25519).
    let keys = ssh_keygen_list(&chip.conf);
    let keys = String::from_utf8_lossy(&keys.stdout);
    assert!(keys.contains("ecdsa-sha2-nistp256 "), "{keys}");
}

#[test]
fn certificates_through_cryptoki() {
    isolated("certificates_through_cryptoki", "", |conf, _| {
        let der = std::fs::read(self_signed_certificate(conf.parent().unwrap())).unwrap();
        let session = rw_session();
        let handle = session
            .create_object(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
                Attribute::Token(true),
                Attribute::Id(vec![7]),
                Attribute::Value(der.clone()),
            ])
            .unwrap();
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::Id(vec![7]),
            ])
            .unwrap();
        assert_eq!(found, vec![handle]);
        assert_eq!(attribute(&session, handle, AttributeType::Value), der);
        session.destroy_object(handle).unwrap();
        assert!(session
            .find_objects(&[Attribute::Class(ObjectClass::CERTIFICATE)])
            .unwrap()
            .is_empty());
    });
}

/// OpenSSH 9.2 logs in with the chip's P-256 key: `ssh -I` against an sshd on the loopback of
/// a network namespace of its own (unshare -n), the key's public half from `ssh-keygen -D` in
/// authorized_keys. Needs root and openssh-server (scripts/install-deps).
#[test]
fn ssh_logs_in_with_the_p256_key_on_the_chip() {
    let chip = TestChip::new("");
    let dir = chip.dir.path();
    pkcs11_tool(
        &chip.conf,
        &[
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--id",
            "30",
            "--label",
            "ssh",
        ],
    );
    let keys = ssh_keygen_list(&chip.conf);
    let authorized = dir.join("authorized_keys");
    std::fs::write(&authorized, &keys.stdout).unwrap();
    let host_key = dir.join("host_ed25519");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_key));
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress 127.0.0.1:2222\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nStrictModes no\n\
             UsePAM no\nPubkeyAcceptedAlgorithms ecdsa-sha2-nistp256\n",
            host_key.display(),
            authorized.display(),
            dir.join("sshd.pid").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    // In a namespace of its own: lo up, sshd (it forks and is ready once it returns), one login.
    let script = format!(
        "ip link set lo up && /usr/sbin/sshd -f {config} -E {log} && \
         ssh -F /dev/null -p 2222 -I {module} -o BatchMode=yes \
         -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@127.0.0.1 \
         echo logged-in-with-the-chip; status=$?; kill $(cat {pid}); exit $status",
        config = config.display(),
        log = dir.join("sshd.log").display(),
        module = module_path().display(),
        pid = dir.join("sshd.pid").display(),
    );
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .env("PKCS11_SE050_CONF", &chip.conf)
        .output()
        .expect("unshare (needs root)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("logged-in-with-the-chip"),
        "ssh -I failed ({}):\n{stdout}\n{}\nsshd log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
    );
}

/// TLS with a client certificate whose key is on the chip: GnuTLS's gnutls-cli (Debian 12's
/// 3.7.9, `pkcs11:` URIs, `--provider` the module) against `openssl s_server` that requires a
/// client certificate from its CA, in a network namespace of its own. The certificate is a CA's
/// for the chip's P-256 public key (`openssl x509 -req -force_pubkey`), stored on the chip
/// with the key's CKA_ID. Needs root, gnutls-bin and openssl.
#[test]
fn tls_client_certificate_with_the_key_on_the_chip() {
    let chip = TestChip::new("");
    let dir = chip.dir.path();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let pkcs11_tool = |args: &[&str]| pkcs11_tool(&chip.conf, args);
    pkcs11_tool(&[
        "--keypairgen",
        "--key-type",
        "EC:prime256v1",
        "--id",
        "40",
        "--label",
        "mqtt",
    ]);
    pkcs11_tool(&[
        "--read-object",
        "--type",
        "pubkey",
        "--id",
        "40",
        "-o",
        &path("chip.der"),
    ]);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for (name, subject) in [("ca", "/CN=test CA"), ("server", "/CN=localhost")] {
        let mut args = vec!["req"];
        if name == "ca" {
            args.push("-x509");
        }
        args.extend_from_slice(&ec);
        let (key, out) = (path(&format!("{name}.key")), path(&format!("{name}.pem")));
        args.extend_from_slice(&[
            "-subj", subject, "-days", "2", "-keyout", &key, "-out", &out,
        ]);
        run(Command::new("openssl").args(&args));
    }
    run(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &path("server.pem"),
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-days",
        "2",
        "-out",
        &path("server.crt"),
    ]));
    // The client's certificate: any request, with the chip's public key forced in.
    der_public_key_to_pem(&dir.join("chip.der"), &dir.join("chip.pem"));
    run(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &path("server.pem"),
        "-force_pubkey",
        &path("chip.pem"),
        "-subj",
        "/CN=device-40",
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-days",
        "2",
        "-outform",
        "DER",
        "-out",
        &path("client.der"),
    ]));
    pkcs11_tool(&[
        "--write-object",
        &path("client.der"),
        "--type",
        "cert",
        "--id",
        "40",
    ]);
    let script = format!(
        "ip link set lo up; \
         openssl s_server -accept 127.0.0.1:4433 -cert {server} -key {server_key} -CAfile {ca} \
           -Verify 1 -verify_return_error -naccept 1 -rev > {log} 2>&1 & \
         for i in $(seq 100); do ss -ltn | grep -q 4433 && break; sleep 0.05; done; \
         echo chip-signed-handshake | gnutls-cli --provider {module} --port 4433 \
           --x509cafile {ca} --verify-hostname localhost --x509certfile 'pkcs11:type=cert;id=%40' \
           --x509keyfile 'pkcs11:type=private;id=%40' 127.0.0.1; status=$?; wait; exit $status",
        server = path("server.crt"),
        server_key = path("server.key"),
        ca = path("ca.pem"),
        log = path("s_server.log"),
        module = module_path().display(),
    );
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .env("PKCS11_SE050_CONF", &chip.conf)
        .output()
        .expect("unshare (needs root)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let server = std::fs::read_to_string(path("s_server.log")).unwrap_or_default();
    // s_server -rev answers each line reversed: the handshake with the chip's key went through.
    assert!(
        stdout.contains("ekahsdnah-dengis-pihc"),
        "TLS with the chip's key failed ({}):\n{stdout}\n{}\ns_server:\n{server}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key's curve comes from the chip (GetECCurveId), not from what the process that made it
/// remembers: an Ed25519 and a P-256 pair made in one process are listed in a second with
/// their key type and CKA_EC_PARAMS (with a chip that did not answer the curve, the module
/// once took the 32-byte Ed25519 key for X25519 there).
#[test]
fn ec_keys_made_in_one_process_keep_their_curve_in_another() {
    const NAME: &str = "ec_keys_made_in_one_process_keep_their_curve_in_another";
    match harness::role(NAME).as_deref() {
        Some("make") => {
            let session = rw_session();
            generate(&session, Mechanism::EccEdwardsKeyPairGen, OID_ED25519, 7);
            generate(&session, Mechanism::EccKeyPairGen, OID_P256, 8);
        }
        Some(_) => {
            let session = rw_session();
            for (id, key_type, params) in [
                (7u8, KeyType::EC_EDWARDS, OID_ED25519),
                (8, KeyType::EC, OID_P256),
            ] {
                for class in [ObjectClass::PUBLIC_KEY, ObjectClass::PRIVATE_KEY] {
                    let found = session
                        .find_objects(&[Attribute::Id(vec![id]), Attribute::Class(class)])
                        .expect("C_FindObjects");
                    assert_eq!(found.len(), 1, "{class:?} with id {id}");
                    let attributes = session
                        .get_attributes(
                            found[0],
                            &[AttributeType::KeyType, AttributeType::EcParams],
                        )
                        .unwrap();
                    assert!(
                        attributes.contains(&Attribute::KeyType(key_type)),
                        "{class:?} {id}: {attributes:?}"
                    );
                    assert!(
                        attributes.contains(&Attribute::EcParams(params.to_vec())),
                        "{class:?} {id}: {attributes:?}"
                    );
                }
            }
        }
        None => {
            let chip = TestChip::new("");
            harness::run_role(NAME, "make", &chip, &[]);
            harness::run_role(NAME, "list", &chip, &[]);
        }
    }
}

/// Issue 25: what the template asked and the token accepted is what the key reports
/// (CKA_MODIFIABLE false is refused, as for X25519), and a key made without a PIN carries an
/// explicit policy on the chip: everyone gets the user's rights, never the chip's default.
#[test]
fn ec_keys_refuse_cka_modifiable_false_and_pin_less_ones_carry_an_explicit_policy() {
    isolated(
        "ec_keys_refuse_cka_modifiable_false_and_pin_less_ones_carry_an_explicit_policy",
        "",
        |_, state| {
            use pkcs11_se050::virtual_se050::applet::VirtualApplet;
            use pkcs11_se050::virtual_se050::store::ObjectData;
            let session = rw_session();
            for (mechanism, params) in [
                (Mechanism::EccKeyPairGen, OID_P256),
                (Mechanism::EccEdwardsKeyPairGen, OID_ED25519),
            ] {
                let refused = session.generate_key_pair(
                    &mechanism,
                    &[
                        Attribute::EcParams(params.to_vec()),
                        Attribute::Verify(true),
                    ],
                    &[Attribute::Sign(true), Attribute::Modifiable(false)],
                );
                assert_eq!(rv(refused), RvError::AttributeValueInvalid, "{mechanism:?}");
            }
            let (_, p256) = generate(&session, Mechanism::EccKeyPairGen, OID_P256, 1);
            let (_, ed25519) = generate(&session, Mechanism::EccEdwardsKeyPairGen, OID_ED25519, 2);
            for private in [p256, ed25519] {
                let modifiable = session
                    .get_attributes(private, &[AttributeType::Modifiable])
                    .unwrap();
                assert_eq!(modifiable, [Attribute::Modifiable(true)]);
            }
            // The policies as the chip holds them: one entry (8 bytes), auth object 0, access
            // sign 10000000 | read 00200000 | delete 00040000 | attestation 00008000, and P-256's
            // key agreement 04000000 (AN12413; NXP's se05x_const.h).
            let chip = VirtualApplet::open(state, std::time::Duration::ZERO).unwrap();
            let mut policies: Vec<_> = chip
                .state()
                .objects
                .iter()
                // The chip's own keys (the attestation key F0000012) are not ours.
                .filter(|(id, _)| **id < 0x7FFF_0000)
                .filter_map(|(_, object)| match object.data {
                    ObjectData::P256Pair { .. } => Some(("P-256", object.policy.clone())),
                    ObjectData::Ed25519Pair { .. } => Some(("Ed25519", object.policy.clone())),
                    _ => None,
                })
                .collect();
            policies.sort();
            assert_eq!(
                policies,
                [
                    ("Ed25519", Some(vec![8, 0, 0, 0, 0, 0x10, 0x24, 0x80, 0x00])),
                    ("P-256", Some(vec![8, 0, 0, 0, 0, 0x14, 0x24, 0x80, 0x00])),
                ]
            );
        },
    );
}
