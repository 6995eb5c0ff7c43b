//! The command blocks of the project's documentation (README.md and docs/*.md), each with the
//! marker that says what the docs test does with it (docs/testing.md, "Docs that run").
//!
//! A fenced block whose language is `sh`, `bash`, `shell` or `console` is a command block: a
//! user is told to type it. The line right before its opening fence must be one of
//!
//! ```text
//! <!-- docs: run -->                       executed in the guide's sandbox, in file order
//! <!-- docs: needs-hardware: REASON -->    a real SE050 or board is needed
//! <!-- docs: not-run: REASON -->           the sandbox cannot or must not run it (systemd, a
//!                                          release build, another machine, minutes of work)
//! ```
//!
//! Output and file contents go in `text`, `toml`, `json` or unnamed blocks, which are not
//! commands and carry no marker.

use std::fmt;
use std::path::{Path, PathBuf};

/// What the docs test does with a command block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    Run,
    NeedsHardware(String),
    NotRun(String),
}

/// One fenced command block.
#[derive(Debug, Clone)]
pub struct CommandBlock {
    pub file: PathBuf,
    /// 1-based line of the opening fence.
    pub line: usize,
    pub language: String,
    pub marker: Marker,
    /// The block's lines, between the fences.
    pub body: String,
}

impl CommandBlock {
    /// `FILE:LINE` of the opening fence, for messages.
    pub fn place(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    /// The shell text a user types: the whole body, or for a `console` block the lines after a
    /// `$ ` prompt (with their `\` continuation lines); output lines are left out.
    pub fn commands(&self) -> String {
        if self.language != "console" {
            return self.body.clone();
        }
        let mut script = String::new();
        let mut continuing = false;
        for line in self.body.lines() {
            let command = if continuing {
                Some(line)
            } else {
                line.strip_prefix("$ ")
            };
            if let Some(command) = command {
                script.push_str(command);
                script.push('\n');
                continuing = command.trim_end().ends_with('\\');
            }
        }
        script
    }
}

/// A marking mistake: the place and what is wrong.
#[derive(Debug, Clone)]
pub struct MarkingError {
    pub place: String,
    pub problem: String,
}

impl fmt::Display for MarkingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.problem)
    }
}

const COMMAND_LANGUAGES: &[&str] = &["sh", "bash", "shell", "console"];
const MARKER_PREFIX: &str = "<!-- docs:";

/// The command blocks of one Markdown file, and every marking mistake in it: a command block
/// without a marker, a marker with an unknown kind or no reason, a marker not followed by a
/// command block.
pub fn command_blocks(file: &Path, text: &str) -> (Vec<CommandBlock>, Vec<MarkingError>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut errors = Vec::new();
    let place = |index: usize| format!("{}:{}", file.display(), index + 1);
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        let trimmed = line.trim_start();
        if trimmed.starts_with(MARKER_PREFIX) {
            let next_is_command_fence = lines
                .get(index + 1)
                .and_then(|next| fence_language(next))
                .is_some_and(|language| COMMAND_LANGUAGES.contains(&language.as_str()));
            if !next_is_command_fence {
                errors.push(MarkingError {
                    place: place(index),
                    problem: "a docs marker must be the line right before a ```sh, ```bash, \
                              ```shell or ```console block"
                        .into(),
                });
            }
            index += 1;
            continue;
        }
        let Some(language) = fence_language(line) else {
            index += 1;
            continue;
        };
        let fence = &trimmed[..trimmed.len() - trimmed.trim_start_matches('`').len()];
        let opening = index;
        let mut body = String::new();
        index += 1;
        while index < lines.len() && !lines[index].trim_start().starts_with(fence) {
            body.push_str(lines[index]);
            body.push('\n');
            index += 1;
        }
        index += 1; // the closing fence
        if !COMMAND_LANGUAGES.contains(&language.as_str()) {
            continue;
        }
        let marker_line = opening.checked_sub(1).map(|i| lines[i].trim());
        let marker = match marker_line.filter(|l| l.starts_with(MARKER_PREFIX)) {
            None => {
                errors.push(MarkingError {
                    place: place(opening),
                    problem: format!(
                        "a ```{language} block without a marker: put `<!-- docs: run -->`, \
                         `<!-- docs: needs-hardware: WHY -->` or `<!-- docs: not-run: WHY -->` \
                         on the line before it (docs/testing.md)"
                    ),
                });
                continue;
            }
            Some(marker_line) => match parse_marker(marker_line) {
                Ok(marker) => marker,
                Err(problem) => {
                    errors.push(MarkingError {
                        place: place(opening - 1),
                        problem,
                    });
                    continue;
                }
            },
        };
        blocks.push(CommandBlock {
            file: file.to_path_buf(),
            line: opening + 1,
            language,
            marker,
            body,
        });
    }
    (blocks, errors)
}

/// The language of a line that opens a fenced block (```` ```sh ````), or None. An unnamed
/// fence has the language "".
fn fence_language(line: &str) -> Option<String> {
    let trimmed = line.trim_start();
    let rest = trimmed.strip_prefix("```")?;
    let rest = rest.trim_start_matches('`');
    Some(rest.trim().to_string())
}

fn parse_marker(line: &str) -> Result<Marker, String> {
    let inner = line
        .strip_prefix(MARKER_PREFIX)
        .and_then(|rest| rest.strip_suffix("-->"))
        .ok_or_else(|| format!("a docs marker is one line `<!-- docs: ... -->`, not `{line}`"))?
        .trim();
    let (kind, reason) = match inner.split_once(':') {
        Some((kind, reason)) => (kind.trim(), reason.trim()),
        None => (inner, ""),
    };
    match kind {
        "run" if reason.is_empty() => Ok(Marker::Run),
        "run" => Err("`<!-- docs: run -->` takes no reason".into()),
        "needs-hardware" | "not-run" if reason.is_empty() => Err(format!(
            "`<!-- docs: {kind}: WHY -->` must say why the block cannot run"
        )),
        "needs-hardware" => Ok(Marker::NeedsHardware(reason.into())),
        "not-run" => Ok(Marker::NotRun(reason.into())),
        other => Err(format!(
            "unknown docs marker `{other}`: run, needs-hardware or not-run"
        )),
    }
}

/// The inline code spans (`` `...` ``) outside fenced blocks that mention one of `words`, each
/// with its 1-based line: prose such as "run `wg-pkcs11 show --json`" is checked like a block.
pub fn inline_code_mentioning(text: &str, words: &[&str]) -> Vec<(usize, String)> {
    let mut spans = Vec::new();
    let mut in_fence = false;
    for (index, line) in text.lines().enumerate() {
        if fence_language(line).is_some() {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let mut parts = line.split('`');
        parts.next(); // the text before the first backtick
        while let (Some(code), Some(_after)) = (parts.next(), parts.next()) {
            if words
                .iter()
                .any(|word| code.split_whitespace().any(|w| w == *word))
            {
                spans.push((index + 1, code.to_string()));
            }
        }
    }
    spans
}

/// README.md and every docs/*.md of the repository, sorted.
pub fn documentation_files(repo: &Path) -> Vec<PathBuf> {
    let mut files = vec![repo.join("README.md")];
    let docs = repo.join("docs");
    let mut guides: Vec<PathBuf> = std::fs::read_dir(&docs)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", docs.display()))
        .map(|entry| entry.expect("cannot read docs/").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    guides.sort();
    files.extend(guides);
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(text: &str) -> (Vec<CommandBlock>, Vec<MarkingError>) {
        command_blocks(Path::new("x.md"), text)
    }

    #[test]
    fn an_unmarked_command_block_is_an_error_naming_its_line() {
        let (found, errors) = blocks("intro\n\n```sh\nls\n```\n");
        assert!(found.is_empty());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].place, "x.md:3");
    }

    #[test]
    fn markers_are_read_and_output_blocks_need_none() {
        let text = "<!-- docs: run -->\n```sh\nls\n```\n```text\nout\n```\n\
                    <!-- docs: needs-hardware: a real SE050 -->\n```console\n$ a \\\n  b\nout\n```\n";
        let (found, errors) = blocks(text);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].marker, Marker::Run);
        assert_eq!(found[0].line, 2);
        assert_eq!(
            found[1].marker,
            Marker::NeedsHardware("a real SE050".into())
        );
        assert_eq!(found[1].commands(), "a \\\n  b\n");
    }

    #[test]
    fn inline_code_outside_fences_is_found() {
        let text = "run `wg-pkcs11 show --json` or `wg show`\n```sh\nwg-pkcs11 x\n```\n";
        assert_eq!(
            inline_code_mentioning(text, &["wg-pkcs11"]),
            vec![(1, "wg-pkcs11 show --json".to_string())]
        );
    }

    #[test]
    fn bad_markers_are_errors() {
        for text in [
            "<!-- docs: not-run -->\n```sh\nls\n```\n",
            "<!-- docs: maybe -->\n```sh\nls\n```\n",
            "<!-- docs: run -->\n\n```sh\nls\n```\n",
            "<!-- docs: run -->\n```text\nls\n```\n",
        ] {
            let (_, errors) = blocks(text);
            assert!(!errors.is_empty(), "no error for {text:?}");
        }
    }
}
