use std::path::Path;

use super::*;

#[test]
fn parses_every_path_attribute() {
    let uri = Pkcs11Uri::parse(
        "pkcs11:token=SE050%20virtual;manufacturer=NXP;serial=0001;model=SE050C;\
             library-manufacturer=wg;library-description=se050%20module;library-version=1.2;\
             slot-description=I2C;slot-manufacturer=NXP%20Semi;slot-id=3;object=wg%2Dkey;\
             id=%01%02%ff;type=private",
    )
    .unwrap();
    assert_eq!(uri.token.as_deref(), Some("SE050 virtual"));
    assert_eq!(uri.manufacturer.as_deref(), Some("NXP"));
    assert_eq!(uri.serial.as_deref(), Some("0001"));
    assert_eq!(uri.model.as_deref(), Some("SE050C"));
    assert_eq!(uri.library_manufacturer.as_deref(), Some("wg"));
    assert_eq!(uri.library_description.as_deref(), Some("se050 module"));
    assert_eq!(uri.library_version, Some((1, 2)));
    assert_eq!(uri.slot_description.as_deref(), Some("I2C"));
    assert_eq!(uri.slot_manufacturer.as_deref(), Some("NXP Semi"));
    assert_eq!(uri.slot_id, Some(3));
    assert_eq!(uri.object.as_deref(), Some("wg-key"));
    assert_eq!(uri.id.as_deref(), Some(&[1u8, 2, 0xff][..]));
    assert_eq!(uri.object_type, Some(ObjectType::Private));
}

#[test]
fn parses_query_attributes() {
    let uri = Pkcs11Uri::parse(
        "pkcs11:object=k?pin-value=12%2634&module-name=se050&module-path=/opt/x.so&x-vendor=1",
    )
    .unwrap();
    assert_eq!(uri.pin_value.as_deref().map(|s| s.as_str()), Some("12&34"));
    assert_eq!(uri.module_name.as_deref(), Some("se050"));
    assert_eq!(uri.module_path.as_deref(), Some("/opt/x.so"));
    assert_eq!(
        uri.unknown_query,
        vec![("x-vendor".to_string(), "1".to_string())]
    );
}

#[test]
fn scheme_is_case_insensitive_and_empty_uri_is_valid() {
    assert_eq!(Pkcs11Uri::parse("PKCS11:").unwrap(), Pkcs11Uri::default());
    assert_eq!(Pkcs11Uri::parse("pkcs11:").unwrap(), Pkcs11Uri::default());
    assert_eq!(
        Pkcs11Uri::parse("pkcs11:;token=a;")
            .unwrap()
            .token
            .as_deref(),
        Some("a")
    );
}

#[test]
fn library_version_without_minor() {
    assert_eq!(
        Pkcs11Uri::parse("pkcs11:library-version=7")
            .unwrap()
            .library_version,
        Some((7, 0))
    );
}

#[test]
fn errors_name_the_problem() {
    let err = |s: &str| Pkcs11Uri::parse(s).unwrap_err();
    assert_eq!(err("file:/x"), UriError::NotPkcs11Scheme);
    assert_eq!(err("pkcs"), UriError::NotPkcs11Scheme);
    // A multi-byte character where the scheme's colon belongs (this used to panic).
    assert_eq!(err("pkcs1é:object=a"), UriError::NotPkcs11Scheme);
    assert_eq!(
        err("pkcs11:object=a%2"),
        UriError::BadPercentEncoding {
            attribute: "object".into()
        }
    );
    assert_eq!(
        err("pkcs11:object=a%zz"),
        UriError::BadPercentEncoding {
            attribute: "object".into()
        }
    );
    assert_eq!(
        err("pkcs11:object=%ff"),
        UriError::NotUtf8 {
            attribute: "object".into()
        }
    );
    assert_eq!(
        err("pkcs11:token"),
        UriError::MissingEquals {
            part: "token".into()
        }
    );
    assert_eq!(
        err("pkcs11:?pin-value"),
        UriError::MissingEquals {
            part: "pin-value".into()
        }
    );
    assert_eq!(
        err("pkcs11:color=red"),
        UriError::UnknownPathAttribute {
            attribute: "color".into()
        }
    );
    // Attribute names are case-sensitive in RFC 7512.
    assert_eq!(
        err("pkcs11:Token=a"),
        UriError::UnknownPathAttribute {
            attribute: "Token".into()
        }
    );
    assert_eq!(
        err("pkcs11:token=a;token=b"),
        UriError::DuplicateAttribute {
            attribute: "token".into()
        }
    );
    assert_eq!(
        err("pkcs11:?module-name=a&module-name=b"),
        UriError::DuplicateAttribute {
            attribute: "module-name".into()
        }
    );
    assert!(matches!(err("pkcs11:slot-id=x"), UriError::BadValue { .. }));
    assert!(matches!(
        err("pkcs11:slot-id=-1"),
        UriError::BadValue { .. }
    ));
    assert!(matches!(
        err("pkcs11:type=secret"),
        UriError::BadValue { .. }
    ));
    assert!(matches!(
        err("pkcs11:library-version=1.x"),
        UriError::BadValue { .. }
    ));
    assert!(matches!(
        err("pkcs11:library-version=300"),
        UriError::BadValue { .. }
    ));
    assert_eq!(
        err("pkcs11:?pin-value=1&pin-source=/f"),
        UriError::PinValueAndSource
    );
    // The messages carry the attribute names.
    assert!(err("pkcs11:color=red").to_string().contains("`color`"));
    assert!(err("pkcs11:slot-id=x").to_string().contains("slot-id"));
}

#[test]
fn display_round_trips() {
    for text in [
            "pkcs11:token=SE050;object=wg%20key;id=%00%01;type=private?pin-value=1234&module-name=se050",
            "pkcs11:slot-id=0;library-version=3.1?module-path=%2Fusr%2Flib%2Fa.so",
            "pkcs11:object=a/b%3Bc;token=x%26y?module-path=/usr/lib/a.so&pin-source=file:/etc/pin%26x",
            "pkcs11:",
        ] {
            let uri = Pkcs11Uri::parse(text).unwrap();
            let again = Pkcs11Uri::parse(&uri.to_string()).unwrap();
            assert_eq!(uri, again, "{text} -> {uri}");
        }
}

#[test]
fn debug_and_redacted_hide_the_pin() {
    let uri = Pkcs11Uri::parse("pkcs11:object=k?pin-value=secret99").unwrap();
    assert!(!format!("{uri:?}").contains("secret99"));
    assert!(!uri.redacted().contains("secret99"));
    assert!(uri.redacted().contains("pin-value=***"));
    let with_path = Pkcs11Uri::parse("pkcs11:object=k?module-path=/usr/lib/x.so").unwrap();
    assert_eq!(
        with_path.to_string(),
        "pkcs11:object=k?module-path=/usr/lib/x.so"
    );
    let escaped = Pkcs11Uri::parse("pkcs11:object=a%2Fb%3Bc%20d").unwrap();
    assert_eq!(escaped.to_string(), "pkcs11:object=a%2Fb%3Bc%20d");
}

#[test]
fn pin_spec_of_value_file_and_credential() {
    let spec = |text: &str| format!("{:?}", Pkcs11Uri::parse(text).unwrap().pin_spec());
    assert_eq!(spec("pkcs11:?pin-source=/etc/pin"), "File(\"/etc/pin\")");
    assert_eq!(
        spec("pkcs11:?pin-source=file:/etc/pin"),
        "File(\"/etc/pin\")"
    );
    assert_eq!(
        spec("pkcs11:?pin-source=file:///etc/pin"),
        "File(\"/etc/pin\")"
    );
    assert_eq!(
        spec("pkcs11:?pin-source=credential:wg0-pin"),
        "Credential(\"wg0-pin\")"
    );
    assert_eq!(spec("pkcs11:"), "None");
    let uri = Pkcs11Uri::parse("pkcs11:?pin-value=99").unwrap();
    assert!(matches!(uri.pin_spec(), PinSpec::Value(v) if v.as_str() == "99"));
}

#[test]
fn pin_values_are_redacted_from_any_text() {
    assert_eq!(
        redact_pin_values("`pkcs11:object=k?pin-value=1234&module-name=x` is bad"),
        "`pkcs11:object=k?pin-value=***&module-name=x` is bad"
    );
    assert_eq!(
        redact_pin_values("pkcs11:?pin-value=12 and pin-value=34"),
        "pkcs11:?pin-value=*** and pin-value=***"
    );
    assert_eq!(redact_pin_values("no pin here"), "no pin here");
}

#[test]
fn matching() {
    let uri = Pkcs11Uri::parse("pkcs11:token=T;serial=S;slot-id=2;library-version=1").unwrap();
    assert!(uri.matches_token("T", "any", "any", "S"));
    assert!(!uri.matches_token("T", "any", "any", "other"));
    assert!(!uri.matches_token("U", "any", "any", "S"));
    assert!(uri.matches_slot(2, "d", "m"));
    assert!(!uri.matches_slot(1, "d", "m"));
    assert!(uri.matches_library("x", "y", (1, 0)));
    assert!(!uri.matches_library("x", "y", (1, 1)));
    assert!(Pkcs11Uri::default().matches_token("", "", "", ""));
}

fn resolver(dir: &Path) -> ModuleResolver {
    let modules = dir.join("modules");
    let user = dir.join("user");
    let libdir = dir.join("lib");
    for d in [&modules, &user, &libdir] {
        std::fs::create_dir_all(d).unwrap();
    }
    ModuleResolver {
        module_dirs: vec![modules, user],
        libdir,
        default_module: PathBuf::from("/proxy.so"),
    }
}

#[test]
fn module_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let r = resolver(dir.path());
    let lib = dir.path().join("lib");
    std::fs::write(lib.join("libpkcs11_se050.so"), b"").unwrap();
    std::fs::write(lib.join("plain.so"), b"").unwrap();
    std::fs::write(
        dir.path().join("modules/se050.module"),
        "# the SE050\nmodule: libpkcs11_se050.so\ncritical: yes\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("user/abs.module"), "module:/opt/abs.so\n").unwrap();
    std::fs::write(dir.path().join("user/broken.module"), "critical: no\n").unwrap();

    let resolve = |s: &str| r.resolve(&Pkcs11Uri::parse(s).unwrap());
    assert_eq!(resolve("pkcs11:").unwrap(), PathBuf::from("/proxy.so"));
    assert_eq!(
        resolve("pkcs11:?module-name=se050").unwrap(),
        lib.join("libpkcs11_se050.so")
    );
    assert_eq!(
        resolve("pkcs11:?module-name=abs").unwrap(),
        PathBuf::from("/opt/abs.so")
    );
    assert_eq!(
        resolve("pkcs11:?module-name=plain").unwrap(),
        lib.join("plain.so")
    );
    assert_eq!(
        resolve("pkcs11:?module-name=pkcs11_se050").unwrap(),
        lib.join("libpkcs11_se050.so")
    );
    assert!(resolve("pkcs11:?module-name=broken")
        .unwrap_err()
        .contains("no `module:` line"));
    assert!(resolve("pkcs11:?module-name=nope")
        .unwrap_err()
        .contains("module-name `nope`"));
    // module-path wins over module-name.
    let direct = lib.join("plain.so");
    assert_eq!(
        resolve(&format!(
            "pkcs11:?module-name=se050&module-path={}",
            direct.display()
        ))
        .unwrap(),
        direct
    );
    assert_eq!(
        resolve(&format!(
            "pkcs11:?module-name=plain&module-path={}",
            lib.display()
        ))
        .unwrap(),
        direct
    );
    assert!(resolve(&format!("pkcs11:?module-path={}", lib.display()))
        .unwrap_err()
        .contains("directory"));
    assert!(resolve("pkcs11:?module-path=/nonexistent.so")
        .unwrap_err()
        .contains("does not exist"));
}
