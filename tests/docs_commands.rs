//! Docs that run (issue 25): every command block of README.md and docs/*.md is marked, the
//! blocks marked `run` are executed against the virtual SE050 in a sandbox, guide by guide, and
//! every `wg-pkcs11` / `pkcs11-se050-tool` command and flag a document shows (run or not) is one
//! the built binary's own `--help` names. The scheme is in docs/testing.md, "Docs that run".

use std::path::{Path, PathBuf};

use e2e_tests::doc_blocks::{
    command_blocks, documentation_files, inline_code_mentioning, CommandBlock, Marker,
};
use e2e_tests::doc_flags::{invocations, HelpTexts};
use e2e_tests::doc_sandbox::{guide_script, run_in_sandbox};
use e2e_tests::{require_root, target_profile_dir};

const CHECKED_BINARIES: &[&str] = &["wg-pkcs11", "pkcs11-se050-tool"];

/// Panics, saying how to build it, when `path` is not a built file.
fn assert_built(path: &Path) {
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` (the tests' profile) first",
        path.display()
    );
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Every document's blocks, relative paths in messages; panics listing every marking mistake.
fn all_blocks() -> Vec<(PathBuf, Vec<CommandBlock>)> {
    let repo = repo();
    let mut mistakes = Vec::new();
    let mut documents = Vec::new();
    for file in documentation_files(&repo) {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let relative = file.strip_prefix(&repo).unwrap_or(&file).to_path_buf();
        let (blocks, errors) = command_blocks(&relative, &text);
        mistakes.extend(errors.iter().map(ToString::to_string));
        documents.push((relative, blocks));
    }
    assert!(
        mistakes.is_empty(),
        "command blocks without a valid marker (docs/testing.md, \"Docs that run\"):\n{}",
        mistakes.join("\n")
    );
    documents
}

#[test]
fn every_command_block_is_marked() {
    let documents = all_blocks();
    let count: usize = documents.iter().map(|(_, blocks)| blocks.len()).sum();
    assert!(count > 0, "no command block found in README.md and docs/");
}

#[test]
fn every_documented_command_and_flag_is_in_the_binaries_help() {
    let mut help = HelpTexts::new(&target_profile_dir(), CHECKED_BINARIES);
    for binary in CHECKED_BINARIES {
        assert_built(&target_profile_dir().join(binary));
    }
    let mut problems = Vec::new();
    let mut checked = 0;
    for (file, blocks) in all_blocks() {
        let mut commands: Vec<(String, String)> = blocks
            .iter()
            .map(|block| (block.place(), block.commands()))
            .collect();
        let text = std::fs::read_to_string(repo().join(&file)).expect("cannot read a document");
        commands.extend(
            inline_code_mentioning(&text, CHECKED_BINARIES)
                .into_iter()
                .map(|(line, code)| (format!("{}:{line}", file.display()), code)),
        );
        for (place, command) in commands {
            for invocation in invocations(&command, CHECKED_BINARIES) {
                checked += 1;
                for problem in help.check(&invocation) {
                    problems.push(format!("{place}: {problem}"));
                }
            }
        }
    }
    assert!(
        checked > 0,
        "no wg-pkcs11 or pkcs11-se050-tool command found in the docs"
    );
    assert!(
        problems.is_empty(),
        "documented commands the binaries do not know:\n{}",
        problems.join("\n\n")
    );
}

#[test]
fn every_run_block_runs_in_a_sandbox() {
    require_root();
    let repo = repo();
    let binaries = target_profile_dir();
    for artefact in ["libpkcs11_se050.so", "wg-pkcs11", "pkcs11-se050-tool"] {
        assert_built(&binaries.join(artefact));
    }
    let mut failures = Vec::new();
    for (file, blocks) in all_blocks() {
        let run: Vec<&CommandBlock> = blocks.iter().filter(|b| b.marker == Marker::Run).collect();
        if run.is_empty() {
            continue;
        }
        let outcome = run_in_sandbox(&guide_script(&run), &repo, &binaries);
        // Shown with --nocapture (cargo keeps a passing test's output to itself).
        eprintln!("{}", outcome.output);
        eprintln!(
            "{}: {} run blocks in {:.1} s: {}",
            file.display(),
            run.len(),
            outcome.elapsed.as_secs_f64(),
            if outcome.success { "ok" } else { "FAILED" }
        );
        if !outcome.success {
            failures.push(format!(
                "{} (its run blocks, in a sandbox):\n{}",
                file.display(),
                outcome.output.trim_end()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The README stays one screen of what, why, the two commands and links (issue 25: at most about
/// 250 lines); the manual belongs in docs/.
#[test]
fn the_readme_stays_short() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("cannot read README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines: move reference material into a guide in docs/"
    );
}
