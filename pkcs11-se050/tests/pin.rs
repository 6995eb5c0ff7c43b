//! PINs end to end: the built module through Debian 12's pkcs11-tool (OpenSC 0.23), cryptoki and
//! p11-kit-proxy.so, each a process of its own on one virtual chip (a state file shared under
//! the module's lock), and once under PlatformSCP03.
//!
//! The cryptoki parts run in children of this test binary (the module reads its configuration
//! from the environment at C_Initialize, which is per process): `child()` below.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use x25519_dalek::{PublicKey, StaticSecret};

const SO_PIN: &str = "87654321";
const CHILD_ENV: &str = "PIN_E2E_ROLE";
const P11_KIT_PROXY: &str = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so";

/// `target/<profile>/libpkcs11_se050.so`, next to `deps/` where this test runs from.
fn module_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("libpkcs11_se050.so");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --release` first",
        path.display()
    );
    path
}

struct Chip {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Chip {
    fn new(extra: &str) -> Chip {
        let dir = tempfile::Builder::new()
            .prefix("pin-e2e-")
            .tempdir()
            .unwrap();
        let conf = dir.path().join("pkcs11-se050.toml");
        std::fs::write(
            &conf,
            format!(
                "transport = \"virtual\"\nvirtual_state = \"{}\"\ntoken_label = \"e2e\"\n{extra}",
                dir.path().join("se050.state").display()
            ),
        )
        .unwrap();
        Chip { dir, conf }
    }

    fn tool_with(&self, module: &Path, args: &[&str]) -> Output {
        Command::new("pkcs11-tool")
            .arg("--module")
            .arg(module)
            .args(args)
            .env("PKCS11_SE050_CONF", &self.conf)
            .output()
            .expect("run pkcs11-tool (Debian package opensc)")
    }

    /// pkcs11-tool with the built module: must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.tool_with(&module_path(), args);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "pkcs11-tool {args:?} failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// pkcs11-tool that must fail, saying `expected` (a CKR name) somewhere.
    fn fails(&self, module: &Path, args: &[&str], expected: &str) {
        let out = self.tool_with(module, args);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "pkcs11-tool {args:?} succeeded:\n{all}"
        );
        assert!(
            all.contains(expected),
            "pkcs11-tool {args:?}: no {expected}:\n{all}"
        );
    }

    /// C_InitToken with the SO PIN, labelling the token `label`.
    fn init_token(&self, label: &str) {
        self.ok(&["--init-token", "--so-pin", SO_PIN, "--label", label]);
    }

    /// The SO sets the user PIN (C_InitPIN: also resets the chip's counter).
    fn init_pin_as_so(&self, user_pin: &str) {
        self.ok(&[
            "--login",
            "--login-type",
            "so",
            "--so-pin",
            SO_PIN,
            "--init-pin",
            "--pin",
            user_pin,
        ]);
    }

    /// A Curve25519 key pair `wg0` for ECDH, made by the user logged in with `user_pin`.
    fn keypairgen_as_user(&self, user_pin: &str) {
        self.ok(&[
            &["--login", "--pin", user_pin],
            keypairgen_args("wg0").as_slice(),
        ]
        .concat());
    }

    /// A user login with `user_pin` through `module` (listing the objects) that must fail with
    /// `expected`; `token_label` picks the token where the module offers several.
    fn login_fails(
        &self,
        module: &Path,
        token_label: Option<&str>,
        user_pin: &str,
        expected: &str,
    ) {
        self.fails(module, &login_args(token_label, user_pin), expected);
    }

    /// Runs cryptoki role `role` of test `test` in a child process on this chip.
    fn child(&self, test: &str, role: &str, pin: &str) {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{role}:{pin}"))
            .env("PKCS11_SE050_CONF", &self.conf)
            .env("PIN_E2E_STATE", self.dir.path().join("se050.state"))
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "child {role}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// pkcs11-tool's arguments for a Curve25519 key pair `label` for ECDH.
fn keypairgen_args(label: &str) -> [&str; 6] {
    [
        "--keypairgen",
        "--key-type",
        "EC:curve25519",
        "--usage-derive",
        "--label",
        label,
    ]
}

/// pkcs11-tool's arguments for a user login with `user_pin` that lists the objects, on the
/// token labelled `token_label` if given.
fn login_args<'a>(token_label: Option<&'a str>, user_pin: &'a str) -> Vec<&'a str> {
    let mut args = match token_label {
        Some(label) => vec!["--token-label", label],
        None => vec![],
    };
    args.extend(["--login", "--pin", user_pin, "-O"]);
    args
}

/// In a child: (role, pin).
fn role() -> Option<(String, String)> {
    let value = std::env::var(CHILD_ENV).ok()?;
    let (role, pin) = value.split_once(':')?;
    Some((role.to_string(), pin.to_string()))
}

fn init() -> Pkcs11 {
    let pkcs11 = Pkcs11::new(module_path()).expect("load the module");
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    pkcs11
}

fn session(pkcs11: &Pkcs11) -> Session {
    let slot = pkcs11.get_slots_with_token().unwrap()[0];
    pkcs11.open_rw_session(slot).unwrap()
}

fn rv<T: std::fmt::Debug>(result: Result<T, Error>) -> RvError {
    match result {
        Err(Error::Pkcs11(rv, _)) => rv,
        other => panic!("expected a PKCS#11 error, got {other:?}"),
    }
}

fn pin(text: &str) -> AuthPin {
    AuthPin::new(text.into())
}

fn key(session: &Session, class: ObjectClass) -> ObjectHandle {
    let found = session
        .find_objects(&[Attribute::Class(class), Attribute::Label(b"wg0".to_vec())])
        .unwrap();
    assert_eq!(found.len(), 1, "one {class:?} labelled wg0: {found:?}");
    found[0]
}

/// C_DeriveKey with a fresh peer; checked against x25519-dalek (RFC 7748) when it works.
fn derive(session: &Session) -> Result<(), Error> {
    let private = key(session, ObjectClass::PRIVATE_KEY);
    let public = key(session, ObjectClass::PUBLIC_KEY);
    derive_with(session, private, public)
}

fn derive_with(
    session: &Session,
    private: ObjectHandle,
    public: ObjectHandle,
) -> Result<(), Error> {
    let peer = StaticSecret::random_from_rng(rand_core::OsRng);
    let peer_public = PublicKey::from(&peer);
    let mechanism = Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(
        EcKdf::null(),
        peer_public.as_bytes(),
    ));
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ];
    let secret = session.derive_key(&mechanism, private, &template)?;
    let value = match &session.get_attributes(secret, &[AttributeType::Value])?[0] {
        Attribute::Value(v) => v.clone(),
        other => panic!("{other:?}"),
    };
    let point = match &session.get_attributes(public, &[AttributeType::EcPoint])?[0] {
        Attribute::EcPoint(p) => p[p.len() - 32..].to_vec(),
        other => panic!("{other:?}"),
    };
    let token_public = PublicKey::from(<[u8; 32]>::try_from(point.as_slice()).unwrap());
    assert_eq!(value, peer.diffie_hellman(&token_public).as_bytes());
    Ok(())
}

/// The cryptoki roles the test below runs in children.
fn run_role(role: &str, user_pin: &str) {
    match role {
        // Another process without the PIN: refused.
        "no_pin" => {
            let pkcs11 = init();
            let s = session(&pkcs11);
            assert_eq!(rv(derive(&s)), RvError::UserNotLoggedIn);
            let info = pkcs11
                .get_token_info(pkcs11.get_slots_with_token().unwrap()[0])
                .unwrap();
            assert!(info.login_required());
            assert!(info.user_pin_initialized());
            // Nor does it relabel the user's keys (the module refuses, and the chip's policy on
            // their metadata records would).
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                let relabel = [Attribute::Label(b"evil".to_vec())];
                assert_eq!(
                    rv(s.update_attributes(key(&s, class), &relabel)),
                    RvError::UserNotLoggedIn
                );
            }
        }
        "derive" => {
            let pkcs11 = init();
            let s = session(&pkcs11);
            s.login(UserType::User, Some(&pin(user_pin))).unwrap();
            derive(&s).unwrap();
            // A secret derived under the login is destroyed at C_Logout.
            let peer = PublicKey::from(&StaticSecret::random_from_rng(rand_core::OsRng));
            let mechanism =
                Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), peer.as_bytes()));
            let secret = s
                .derive_key(
                    &mechanism,
                    key(&s, ObjectClass::PRIVATE_KEY),
                    &[
                        Attribute::Class(ObjectClass::SECRET_KEY),
                        Attribute::KeyType(KeyType::GENERIC_SECRET),
                    ],
                )
                .unwrap();
            s.logout().unwrap();
            assert_eq!(
                rv(s.get_attributes(secret, &[AttributeType::ValueLen])),
                RvError::ObjectHandleInvalid
            );
            assert_eq!(rv(derive(&s)), RvError::UserNotLoggedIn);
        }
        // Locked: so it stays across C_Finalize, dlclose and a new load of the module.
        "locked" => {
            for _ in 0..2 {
                let pkcs11 = init();
                let slot = pkcs11.get_slots_with_token().unwrap()[0];
                assert!(pkcs11.get_token_info(slot).unwrap().user_pin_locked());
                let s = session(&pkcs11);
                assert_eq!(
                    rv(s.login(UserType::User, Some(&pin(user_pin)))),
                    RvError::PinLocked
                );
                drop(s);
                pkcs11.finalize().unwrap();
            }
        }
        // The chip loses its power while the process is logged in: the module drops the login,
        // the key operation answers CKR_USER_NOT_LOGGED_IN until the caller logs in again.
        "reset" => {
            let state = PathBuf::from(std::env::var("PIN_E2E_STATE").unwrap());
            let pkcs11 = init();
            let s = session(&pkcs11);
            s.login(UserType::User, Some(&pin(user_pin))).unwrap();
            let private = key(&s, ObjectClass::PRIVATE_KEY);
            let public = key(&s, ObjectClass::PUBLIC_KEY);
            derive_with(&s, private, public).unwrap();
            pkcs11_se050::virtual_se050::power::power_cycle(&state).unwrap();
            assert_eq!(
                rv(derive_with(&s, private, public)),
                RvError::UserNotLoggedIn
            );
            let info = s.get_session_info().unwrap();
            assert_eq!(
                info.session_state(),
                cryptoki::session::SessionState::RwPublic,
                "logged out"
            );
            assert_eq!(
                rv(derive(&s)),
                RvError::UserNotLoggedIn,
                "no login by itself"
            );
            s.login(UserType::User, Some(&pin(user_pin))).unwrap();
            derive(&s).unwrap();
        }
        other => panic!("no role {other}"),
    }
}

#[test]
fn pkcs11_tool_provisions_a_pin_the_chip_locks_it_and_the_so_unlocks_it() {
    const NAME: &str = "pkcs11_tool_provisions_a_pin_the_chip_locks_it_and_the_so_unlocks_it";
    if let Some((role, pin)) = role() {
        return run_role(&role, &pin);
    }
    let chip = Chip::new("pin_max_attempts = 3\n");
    // Fleet provisioning with the stock tool.
    chip.init_token("fleet-7");
    chip.init_pin_as_so("1234");
    chip.ok(&["--change-pin", "--pin", "1234", "--new-pin", "5678"]);
    chip.keypairgen_as_user("5678");
    let slots = chip.ok(&["-L"]);
    assert!(
        slots.contains("fleet-7"),
        "the label C_InitToken set:\n{slots}"
    );
    assert!(slots.contains("login required"), "{slots}");
    // Keygen without login is refused.
    chip.fails(
        &module_path(),
        &keypairgen_args("x"),
        "CKR_USER_NOT_LOGGED_IN",
    );
    chip.child(NAME, "no_pin", "-");
    chip.child(NAME, "derive", "5678");
    chip.child(NAME, "reset", "5678");

    // Three wrong PINs, each in a new process: the chip counts and locks.
    for _ in 0..2 {
        chip.login_fails(&module_path(), None, "0000", "CKR_PIN_INCORRECT");
    }
    let slots = chip.ok(&["-L"]);
    assert!(slots.contains("final user PIN try"), "{slots}");
    chip.login_fails(&module_path(), None, "0000", "CKR_PIN_LOCKED");
    chip.login_fails(&module_path(), None, "5678", "CKR_PIN_LOCKED");
    let slots = chip.ok(&["-L"]);
    assert!(slots.contains("user PIN locked"), "{slots}");
    chip.child(NAME, "locked", "5678");

    // Through p11-kit-proxy.so too. The proxy shows every registered module (other builds'
    // too, which read the same configuration): the chip's label picks ours.
    let registered = RegisteredModule::install();
    chip.login_fails(
        Path::new(P11_KIT_PROXY),
        Some("fleet-7"),
        "5678",
        "CKR_PIN_LOCKED",
    );
    // The SO unlocks it (C_InitPIN writes the UserID again, which resets the chip's counter).
    chip.init_pin_as_so("2468");
    chip.child(NAME, "derive", "2468");
    let out = chip.tool_with(
        Path::new(P11_KIT_PROXY),
        &login_args(Some("fleet-7"), "2468"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("wg0"));
    drop(registered);
    drop(chip.dir);
}

#[test]
fn login_and_derive_under_platform_scp03() {
    const NAME: &str = "login_and_derive_under_platform_scp03";
    if let Some((role, pin)) = role() {
        return run_role(&role, &pin);
    }
    // The chip refuses plain applet commands; the module holds NXP's SE050C2 development keys.
    let chip = Chip::new("virtual_scp03_required = true\nscp03_keys = \"scp.keys\"\n");
    let keys = pkcs11_se050::scp03::StaticKeys::published("SE050C2").unwrap();
    let key_file = chip.dir.path().join("scp.keys");
    std::fs::write(&key_file, keys.to_file_text().as_bytes()).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    chip.init_token("scp");
    chip.init_pin_as_so("1234");
    chip.keypairgen_as_user("1234");
    chip.child(NAME, "derive", "1234");
    chip.child(NAME, "no_pin", "-");
    chip.child(NAME, "reset", "1234");
}

/// A p11-kit module file for the built .so in /etc/pkcs11/modules (p11-kit run as root reads
/// only that directory), removed when dropped.
struct RegisteredModule {
    path: PathBuf,
}

impl RegisteredModule {
    fn install() -> RegisteredModule {
        let dir = Path::new("/etc/pkcs11/modules");
        std::fs::create_dir_all(dir).expect("this test registers a p11-kit module: run as root");
        let path = dir.join(format!(
            "pkcs11-se050-pin-e2e-{}.module",
            std::process::id()
        ));
        std::fs::write(&path, format!("module: {}\n", module_path().display())).unwrap();
        RegisteredModule { path }
    }
}

impl Drop for RegisteredModule {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
