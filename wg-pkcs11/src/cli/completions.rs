//! The shell completions in conf/completions/ are generated from the command line's one
//! definition (cli/args.rs) by clap_complete. They are checked in, so that the package installs
//! them without running the binary; this test regenerates them and fails when a file differs
//! (a flag renamed in args.rs and not in the completions). To regenerate:
//! `REGENERATE_COMPLETIONS=1 cargo test -p wg-pkcs11 --bin wg-pkcs11 completions`.

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap_complete::Shell;

    /// (shell, file name in conf/completions/): the names the shells look up.
    const FILES: [(Shell, &str); 3] = [
        (Shell::Bash, "wg-pkcs11.bash"),
        (Shell::Zsh, "_wg-pkcs11"),
        (Shell::Fish, "wg-pkcs11.fish"),
    ];

    pub fn generated(shell: Shell, mut command: clap::Command) -> String {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut command, "wg-pkcs11", &mut out);
        let text = String::from_utf8(out).expect("clap_complete writes UTF-8");
        // clap_complete 4.6's bash script spells the state of a hyphenated binary two ways
        // (`wg__pkcs11__subcmd__up` where it is set, `wg__subcmd__pkcs11__subcmd__up` where it
        // is matched), so nothing after a command ever completes (clap-rs/clap#6421). One
        // spelling; the test below completes an option of a command through bash.
        match shell {
            Shell::Bash => text.replace("wg__subcmd__pkcs11", "wg__pkcs11"),
            _ => text,
        }
    }

    fn completions_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conf/completions")
    }

    #[test]
    fn checked_in_completions_are_generated_from_the_definition() {
        let regenerate = std::env::var_os("REGENERATE_COMPLETIONS").is_some();
        let mut stale = Vec::new();
        for (shell, name) in FILES {
            let path = completions_dir().join(name);
            let fresh = generated(shell, super::super::args::command());
            if regenerate {
                std::fs::write(&path, &fresh).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(fresh.as_str()) {
                stale.push(format!("conf/completions/{name}"));
            }
        }
        assert!(
            stale.is_empty(),
            "{} not what clap_complete generates from wg-pkcs11/src/cli/args.rs; regenerate \
             with `REGENERATE_COMPLETIONS=1 cargo test -p wg-pkcs11 --bin wg-pkcs11 completions`",
            stale.join(", ")
        );
    }

    /// What the checked-in bash completion offers for `words` (the last one being completed).
    fn bash_completes(words: &[&str]) -> Vec<String> {
        let script = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; _wg__pkcs11 wg-pkcs11 '{}' '{}'; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            completions_dir().join("wg-pkcs11.bash").display(),
            words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            words.len() - 1,
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .expect("bash runs");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn bash_completes_commands_and_their_options() {
        let commands = bash_completes(&["wg-pkcs11", ""]);
        assert!(commands.iter().any(|w| w == "rotate"), "{commands:?}");
        let rotate = bash_completes(&["wg-pkcs11", "rotate", "wg0", "--"]);
        assert!(rotate.iter().any(|w| w == "--timeout"), "{rotate:?}");
        let admit = bash_completes(&["wg-pkcs11", "admit", "--"]);
        assert!(admit.iter().any(|w| w == "--allowed-ips"), "{admit:?}");
    }

    #[test]
    fn the_completions_know_every_command_and_flag() {
        let bash = generated(Shell::Bash, super::super::args::command());
        for word in [
            "up",
            "down",
            "save",
            "strip",
            "genkey",
            "pubkey",
            "show",
            "list",
            "set",
            "rotate",
            "attest",
            "verify-attestation",
            "admit",
            "nonce",
            "--foreground",
            "--json",
            "--timeout",
            "--nonce-dir",
            "--allowed-ips",
            "private-key-uri",
        ] {
            assert!(bash.contains(word), "the bash completion lacks {word}");
        }
    }
}
