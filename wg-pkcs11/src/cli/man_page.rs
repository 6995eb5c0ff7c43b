//! The man page wg-pkcs11(8) (conf/man/wg-pkcs11.8) is written by hand, for its prose (files,
//! environment, exit status, attestation), and checked against the command line's definition
//! (cli/args.rs): every command and flag clap knows is in the page, each flag in its command's
//! entry, and every flag the page's SYNOPSIS and COMMANDS name exists.

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    const PAGE: &str = include_str!("../../../conf/man/wg-pkcs11.8");

    /// The page's text with the roff font changes and escapes taken out.
    fn plain(roff: &str) -> String {
        roff.replace("\\-", "-")
            .replace("\\fB", "")
            .replace("\\fI", "")
            .replace("\\fR", "")
            .replace("\\fP", "")
    }

    /// The lines of section `name` (`.SH name` up to the next `.SH`).
    fn section(page: &str, name: &str) -> Vec<String> {
        page.lines()
            .skip_while(|l| *l != format!(".SH {name}"))
            .skip(1)
            .take_while(|l| !l.starts_with(".SH "))
            .map(String::from)
            .collect()
    }

    /// Each command's entry in COMMANDS: its name (the `.TP` tag's first word) and its text.
    fn entries(page: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let lines = section(page, "COMMANDS");
        let mut it = lines.iter().peekable();
        while let Some(line) = it.next() {
            if line == ".TP" {
                let tag = it.next().cloned().unwrap_or_default();
                let name = tag
                    .trim_start_matches(".B ")
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
                out.push((name, tag));
            } else if let Some((_, text)) = out.last_mut() {
                text.push('\n');
                text.push_str(line);
            }
        }
        out
    }

    /// The options a text names: words such as `--nonce-dir` or `-f`.
    fn flags_named(text: &str) -> BTreeSet<String> {
        text.split(|c: char| c.is_whitespace() || "[]|(),".contains(c))
            .map(|w| w.trim_end_matches(['.', ';', ':']))
            .filter(|w| {
                let name = w.trim_start_matches('-');
                (w.starts_with('-') && name.len() + 2 >= w.len() && w.len() > name.len())
                    && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            })
            .map(String::from)
            .collect()
    }

    /// The options clap knows for `command`: `--long` and `-s` of each argument, help included.
    fn flags_of(command: &clap::Command) -> BTreeSet<String> {
        let mut command = command.clone();
        command.build();
        let mut out = BTreeSet::new();
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long() {
                out.insert(format!("--{long}"));
            }
            if let Some(short) = arg.get_short() {
                out.insert(format!("-{short}"));
            }
        }
        out
    }

    fn help_flags() -> BTreeSet<String> {
        ["-h", "--help"].map(String::from).into()
    }

    #[test]
    fn every_command_and_flag_is_in_the_man_page() {
        let page = plain(PAGE);
        let definition = super::super::args::command();
        let entries = entries(&page);
        let mut missing = Vec::new();
        for command in definition.get_subcommands().filter(|c| !c.is_hide_set()) {
            let name = command.get_name();
            let Some((_, entry)) = entries.iter().find(|(n, _)| n == name) else {
                missing.push(format!("no entry for `{name}` in COMMANDS"));
                continue;
            };
            let named = flags_named(entry);
            for flag in flags_of(command).difference(&help_flags()) {
                if !named.contains(flag) {
                    missing.push(format!("`{name}`'s entry does not name {flag}"));
                }
            }
            for flag in named.difference(&flags_of(command)) {
                missing.push(format!(
                    "`{name}`'s entry names {flag}, which `{name}` lacks"
                ));
            }
        }
        let synopsis = flags_named(&section(&page, "SYNOPSIS").join("\n"));
        let mut top = flags_of(&definition);
        for flag in top.difference(&synopsis) {
            missing.push(format!("SYNOPSIS does not name {flag}"));
        }
        // The synopsis also shows a few commands' own options (up -f, show --json).
        for command in definition.get_subcommands() {
            top.extend(flags_of(command));
        }
        for flag in synopsis.difference(&top) {
            missing.push(format!("SYNOPSIS names {flag}, which wg-pkcs11 lacks"));
        }
        for (name, _) in &entries {
            let known = name.is_empty()
                || name.starts_with('[')
                || definition.find_subcommand(name).is_some();
            if !known {
                missing.push(format!(
                    "COMMANDS describes `{name}`, which wg-pkcs11 lacks"
                ));
            }
        }
        assert!(
            missing.is_empty(),
            "conf/man/wg-pkcs11.8 and the command line (wg-pkcs11/src/cli/args.rs) differ:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn flags_are_found_in_roff() {
        let text = plain(".B up \\fR[\\fB\\-f\\fR|\\fB\\-\\-foreground\\fR] \\fICONFIG\\fR");
        assert_eq!(
            flags_named(&text),
            ["-f", "--foreground"].map(String::from).into()
        );
        assert!(flags_named("wg-quick and pkcs11-se050, 0x5E050A77").is_empty());
    }
}
