//! Where Debian puts PKCS#11 modules and p11-kit's proxy, for the architecture this binary was
//! built for: `/usr/lib/<multiarch triple>/pkcs11/` and `/usr/lib/<triple>/p11-kit-proxy.so`.
//!
//! The triple comes from the build target (Debian's multiarch tuples: x86_64-linux-gnu,
//! aarch64-linux-gnu, arm-linux-gnueabihf, ...). A packager who knows better (another layout,
//! a distribution that is not Debian) sets `WG_PKCS11_P11_MODULE_PATH` and
//! `WG_PKCS11_P11_PROXY` at build time, which `scripts/package` takes from p11-kit's own
//! pkg-config file (`p11_module_path`, `proxy_module`) of the target architecture.

/// The Debian multiarch tuple of a Rust target (arch, os, env, abi), or None for targets
/// Debian does not have.
pub fn debian_multiarch(arch: &str, os: &str, env: &str, abi: &str) -> Option<&'static str> {
    if os != "linux" {
        return None;
    }
    Some(match (arch, env, abi) {
        ("x86_64", "gnu", "") => "x86_64-linux-gnu",
        ("x86_64", "gnu", "x32") => "x86_64-linux-gnux32",
        ("x86", "gnu", _) => "i386-linux-gnu",
        ("aarch64", "gnu", _) => "aarch64-linux-gnu",
        ("arm", "gnu", "eabihf") => "arm-linux-gnueabihf",
        ("arm", "gnu", "eabi") => "arm-linux-gnueabi",
        ("riscv64", "gnu", _) => "riscv64-linux-gnu",
        ("powerpc64", "gnu", _) if cfg!(target_endian = "little") => "powerpc64le-linux-gnu",
        ("s390x", "gnu", _) => "s390x-linux-gnu",
        ("mips64", "gnu", "abi64") => "mips64el-linux-gnuabi64",
        ("loongarch64", "gnu", _) => "loongarch64-linux-gnu",
        _ => return None,
    })
}

/// The triple of the architecture this binary runs on.
pub fn this_multiarch() -> Option<&'static str> {
    debian_multiarch(
        std::env::consts::ARCH,
        std::env::consts::OS,
        target_env(),
        target_abi(),
    )
}

fn target_env() -> &'static str {
    if cfg!(target_env = "gnu") {
        "gnu"
    } else if cfg!(target_env = "musl") {
        "musl"
    } else {
        ""
    }
}

fn target_abi() -> &'static str {
    if cfg!(target_abi = "eabihf") {
        "eabihf"
    } else if cfg!(target_abi = "eabi") {
        "eabi"
    } else if cfg!(target_abi = "x32") {
        "x32"
    } else if cfg!(target_abi = "abi64") {
        "abi64"
    } else {
        ""
    }
}

/// The PKCS#11 module directory for a triple (`None`: the usual non-multiarch `/usr/lib`).
pub fn module_dir_for(triple: Option<&str>) -> String {
    match triple {
        Some(t) => format!("/usr/lib/{t}/pkcs11"),
        None => "/usr/lib/pkcs11".to_string(),
    }
}

pub fn proxy_for(triple: Option<&str>) -> String {
    match triple {
        Some(t) => format!("/usr/lib/{t}/p11-kit-proxy.so"),
        None => "/usr/lib/p11-kit-proxy.so".to_string(),
    }
}

/// Where `module-name` and relative p11-kit `module:` paths are looked up.
pub fn pkcs11_module_dir() -> String {
    option_env!("WG_PKCS11_P11_MODULE_PATH")
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| module_dir_for(this_multiarch()))
}

/// The module used when a URI names none: p11-kit's proxy.
pub fn p11_kit_proxy() -> String {
    option_env!("WG_PKCS11_P11_PROXY")
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| proxy_for(this_multiarch()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_architectures_resolve() {
        // amd64, arm64 (Raspberry Pi OS 64-bit), armhf (Raspberry Pi OS 32-bit), as rustc
        // describes their targets (x86_64-unknown-linux-gnu, aarch64-unknown-linux-gnu,
        // armv7-unknown-linux-gnueabihf).
        let amd64 = debian_multiarch("x86_64", "linux", "gnu", "");
        let arm64 = debian_multiarch("aarch64", "linux", "gnu", "");
        let armhf = debian_multiarch("arm", "linux", "gnu", "eabihf");
        assert_eq!(amd64, Some("x86_64-linux-gnu"));
        assert_eq!(arm64, Some("aarch64-linux-gnu"));
        assert_eq!(armhf, Some("arm-linux-gnueabihf"));
        assert_eq!(module_dir_for(amd64), "/usr/lib/x86_64-linux-gnu/pkcs11");
        assert_eq!(module_dir_for(arm64), "/usr/lib/aarch64-linux-gnu/pkcs11");
        assert_eq!(module_dir_for(armhf), "/usr/lib/arm-linux-gnueabihf/pkcs11");
        assert_eq!(
            proxy_for(arm64),
            "/usr/lib/aarch64-linux-gnu/p11-kit-proxy.so"
        );
        assert_eq!(
            proxy_for(armhf),
            "/usr/lib/arm-linux-gnueabihf/p11-kit-proxy.so"
        );
        assert_eq!(debian_multiarch("x86_64", "macos", "", ""), None);
        assert_eq!(module_dir_for(None), "/usr/lib/pkcs11");
    }

    #[test]
    fn this_build_matches_the_system_p11_kit() {
        // p11-kit's own pkg-config file of this build's architecture (libp11-kit-dev:ARCH) says
        // where its proxy and module directory are; ours must agree. Its directory is asked
        // for by name: the pkg-config that runs is the machine's, which under qemu-user is
        // another architecture's and would answer for its own.
        let triple = this_multiarch().expect("a Debian architecture");
        let libdir = format!("/usr/lib/{triple}/pkgconfig:/usr/share/pkgconfig");
        let variable = |name: &str| {
            let Ok(out) = std::process::Command::new("pkg-config")
                .env("PKG_CONFIG_LIBDIR", &libdir)
                .args(["p11-kit-1", "--variable", name])
                .output()
            else {
                panic!("pkg-config is not installed (scripts/install-deps)");
            };
            assert!(
                out.status.success(),
                "pkg-config p11-kit-1 in {libdir} (libp11-kit-dev of this architecture, \
                 scripts/install-deps): {out:?}"
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert_eq!(pkcs11_module_dir(), variable("p11_module_path"));
        assert_eq!(p11_kit_proxy(), variable("proxy_module"));
    }
}
