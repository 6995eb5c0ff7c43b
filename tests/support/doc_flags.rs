//! Every `wg-pkcs11 COMMAND --flag` and `pkcs11-se050-tool COMMAND --flag` a document shows,
//! checked against the binary's own `COMMAND --help`, so that a renamed command or flag turns the
//! docs test red even in a block that needs hardware.
//!
//! Flags are matched as tokens of the help text, not by its layout: the help may be formatted by
//! hand or by clap.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

/// One shell word, or an operator (`|`, `;`, `&&`, `>`, `(`, ...) that ends a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Word {
    Plain(String),
    Quoted(String),
    Operator,
}

/// Splits shell text into words, enough for documentation: quotes, backslashes, comments,
/// operators and `\` line continuations. Command substitutions are not looked into.
pub fn shell_words(text: &str) -> Vec<Word> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    let finish =
        |words: &mut Vec<Word>, current: &mut String, quoted: &mut bool, in_word: &mut bool| {
            if *in_word {
                let text = std::mem::take(current);
                words.push(if *quoted {
                    Word::Quoted(text)
                } else {
                    Word::Plain(text)
                });
            }
            *quoted = false;
            *in_word = false;
        };
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(escaped) => {
                    current.push(escaped);
                    in_word = true;
                }
            },
            '\'' | '"' => {
                quoted = true;
                in_word = true;
                for inner in chars.by_ref() {
                    if inner == c {
                        break;
                    }
                    current.push(inner);
                }
            }
            '#' if !in_word => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        break;
                    }
                }
                words.push(Word::Operator);
            }
            ';' | '|' | '&' | '(' | ')' | '<' | '>' | '\n' => {
                finish(&mut words, &mut current, &mut quoted, &mut in_word);
                words.push(Word::Operator);
            }
            c if c.is_whitespace() => finish(&mut words, &mut current, &mut quoted, &mut in_word),
            c => {
                current.push(c);
                in_word = true;
            }
        }
    }
    finish(&mut words, &mut current, &mut quoted, &mut in_word);
    words
}

/// One use of a checked binary in a document: `BINARY [COMMAND] FLAGS...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub binary: String,
    /// The word after the binary when it is not a flag (a command, or an interface name).
    pub command: Option<String>,
    /// The words starting with `-`, `--name=value` cut to `--name`.
    pub flags: Vec<String>,
}

/// The invocations of `binaries` in shell text. A binary counts when a word is exactly its name
/// (`target/release/wg-pkcs11` as an argument of `install` does not).
pub fn invocations(text: &str, binaries: &[&str]) -> Vec<Invocation> {
    let words = shell_words(text);
    let mut found = Vec::new();
    for (index, word) in words.iter().enumerate() {
        let Word::Plain(name) = word else { continue };
        if !binaries.contains(&name.as_str()) {
            continue;
        }
        // The value of another program's flag (`cargo test -p wg-pkcs11`) names a package, not
        // a run of the binary.
        if let Some(Word::Plain(previous)) = index.checked_sub(1).map(|i| &words[i]) {
            if previous.starts_with('-') {
                continue;
            }
        }
        let mut invocation = Invocation {
            binary: name.clone(),
            command: None,
            flags: Vec::new(),
        };
        for (position, argument) in words[index + 1..].iter().enumerate() {
            let text = match argument {
                Word::Operator => break,
                Word::Quoted(_) => continue,
                // A synopsis's optional parts: `[-f]`, `[--hook CMD]`.
                Word::Plain(text) => text.trim_start_matches('[').trim_end_matches(']'),
            };
            if text.starts_with('-') && text.len() > 1 {
                let flag = text.split('=').next().unwrap_or(text);
                invocation.flags.push(flag.to_string());
            } else if position == 0 {
                invocation.command = Some(text.to_string());
            }
        }
        found.push(invocation);
    }
    found
}

/// The words of a help text: runs of letters, digits, `-` and `_`.
pub fn help_tokens(help: &str) -> BTreeSet<String> {
    help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|token| !token.is_empty())
        .map(str::to_string)
        .collect()
}

/// What a binary says for `--help` and for `COMMAND --help`, asked once each. The module is
/// pointed at a configuration that does not exist, so a binary that took `--help` for an
/// argument could touch no chip.
pub struct HelpTexts {
    binaries: HashMap<String, std::path::PathBuf>,
    cache: HashMap<(String, Option<String>), String>,
}

impl HelpTexts {
    pub fn new(binary_dir: &Path, binaries: &[&str]) -> HelpTexts {
        HelpTexts {
            binaries: binaries
                .iter()
                .map(|name| (name.to_string(), binary_dir.join(name)))
                .collect(),
            cache: HashMap::new(),
        }
    }

    pub fn help(&mut self, binary: &str, command: Option<&str>) -> &str {
        let key = (binary.to_string(), command.map(str::to_string));
        if !self.cache.contains_key(&key) {
            let path = &self.binaries[binary];
            let mut run = Command::new(path);
            run.args(command).arg("--help");
            run.env("PKCS11_SE050_CONF", "/nonexistent/docs-test-help.toml");
            let out = run
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            self.cache.insert(key.clone(), text);
        }
        &self.cache[&key]
    }

    /// What is wrong with one invocation, if anything: a command the binary's `--help` does not
    /// name, or a flag its `COMMAND --help` (or `--help`, for flags before any command) lacks.
    pub fn check(&mut self, invocation: &Invocation) -> Vec<String> {
        let binary = invocation.binary.as_str();
        let top = help_tokens(self.help(binary, None));
        let command = invocation
            .command
            .as_deref()
            .filter(|word| top.contains(*word) && is_command_word(word));
        if let Some(word) = invocation.command.as_deref() {
            if command.is_none() && !is_interface_or_file(word) {
                return vec![format!(
                    "`{binary} {word}`: `{binary} --help` names no command `{word}` (and it is \
                     not an interface name or a config file)"
                )];
            }
        }
        let help_text = self.help(binary, command).to_string();
        let tokens = help_tokens(&help_text);
        let asked = match command {
            Some(command) => format!("{binary} {command} --help"),
            None => format!("{binary} --help"),
        };
        invocation
            .flags
            .iter()
            .filter(|flag| !tokens.contains(flag.as_str()))
            .map(|flag| {
                format!(
                    "`{asked}` does not mention `{flag}` (renamed or removed?); it says:\n{}",
                    help_text.trim_end()
                )
            })
            .collect()
    }
}

fn is_command_word(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `wg0`, `IFNAME`, `/etc/wireguard/wg0.conf`, `$IF`: what wg-pkcs11 takes where a command could
/// stand (userspace-implementation mode).
fn is_interface_or_file(word: &str) -> bool {
    let interface = word.starts_with("wg") && word[2..].chars().all(|c| c.is_ascii_digit());
    interface
        || word.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        || word.contains('/')
        || word.contains('.')
        || word.starts_with('$')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_respect_quotes_comments_and_operators() {
        let words = shell_words("wg-pkcs11 rotate wg0 --check 'ping -c1 x' # --not\necho | a");
        assert_eq!(
            words,
            vec![
                Word::Plain("wg-pkcs11".into()),
                Word::Plain("rotate".into()),
                Word::Plain("wg0".into()),
                Word::Plain("--check".into()),
                Word::Quoted("ping -c1 x".into()),
                Word::Operator,
                Word::Plain("echo".into()),
                Word::Operator,
                Word::Plain("a".into()),
            ]
        );
    }

    #[test]
    fn invocations_find_the_command_and_flags() {
        let found = invocations(
            "install target/release/wg-pkcs11 /usr/bin/\nsudo wg-pkcs11 up -f \\\n  wg0 && \
             wg-pkcs11 nonce --ttl=60 > n\ncargo test -p wg-pkcs11 --bin wg-pkcs11 man_page",
            &["wg-pkcs11"],
        );
        assert_eq!(
            found,
            vec![
                Invocation {
                    binary: "wg-pkcs11".into(),
                    command: Some("up".into()),
                    flags: vec!["-f".into()],
                },
                Invocation {
                    binary: "wg-pkcs11".into(),
                    command: Some("nonce".into()),
                    flags: vec!["--ttl".into()],
                },
            ]
        );
    }

    #[test]
    fn help_tokens_ignore_layout() {
        let tokens = help_tokens("  -f, --foreground   stay\n[--hook CMD] --timeout=S");
        for token in ["-f", "--foreground", "--hook", "--timeout"] {
            assert!(tokens.contains(token), "{token}");
        }
    }
}
