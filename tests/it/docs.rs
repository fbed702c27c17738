//! The documentation's shape: a short README with the two commands on its
//! first screen and a link to every page under `docs/`, links between the
//! pages that resolve (files and headings), and the README's test command
//! the one `.ci/run` runs. No services needed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::helpers::repo_path;

/// The README's upper bound ("at most about 250 lines", with some slack).
const README_MAX_LINES: usize = 260;

/// How far down the README both commands must appear: one screen.
const FIRST_SCREEN_LINES: usize = 50;

const RUN_COMMAND: &str = "cargo run -- demo";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every `docs/*.md` page, sorted by name.
fn doc_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(repo_path("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    assert!(!pages.is_empty(), "docs/ holds pages");
    pages
}

/// The line `.ci/run` runs the tests with: the one after its "Keep this
/// line identical" comment.
fn ci_test_command() -> String {
    let ci = read(&repo_path(".ci/run"));
    let mut lines = ci.lines();
    lines
        .by_ref()
        .find(|line| line.contains("Keep this line identical to the test command in README.md"))
        .expect(".ci/run keeps its \"Keep this line identical\" comment");
    let command = lines
        .next()
        .expect("a line after the comment")
        .trim()
        .to_owned();
    assert!(
        command.starts_with("cargo nextest run"),
        ".ci/run's test line is a nextest run: {command}"
    );
    command
}

/// Markdown text without its fenced code blocks, line by line (a fenced
/// line becomes empty, so line numbers stay).
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
                fenced = !fenced;
                ""
            } else if fenced {
                ""
            } else {
                line
            }
        })
        .collect()
}

/// `text` without its inline code spans (a run of N backticks up to the
/// next run of exactly N), which may hold `](` that is not a link.
fn without_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let run_at = |i: usize| chars[i..].iter().take_while(|c| **c == '`').count();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let open = run_at(i);
        let mut j = i + open;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let run = run_at(j);
                if run == open {
                    close = Some(j + run);
                    break;
                }
                j += run;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                out.push_str("code");
                i = end;
            }
            None => {
                // An unmatched run is literal backticks.
                out.extend(&chars[i..i + open]);
                i += open;
            }
        }
    }
    out
}

/// The targets of every inline link and image (`[text](target)`,
/// `![alt](target)`) and reference definition (`[name]: target`) outside
/// code.
fn link_targets(text: &str) -> Vec<String> {
    let prose = without_code_spans(&prose_lines(text).join("\n"));
    let mut targets = Vec::new();
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(')').expect("a link target ends with `)`");
        let target = after[..end].split_whitespace().next().unwrap_or("");
        targets.push(target.trim_matches(|c| c == '<' || c == '>').to_owned());
        rest = &after[end..];
    }
    for line in prose.lines() {
        let line = line.trim_start();
        let definition = line
            .strip_prefix('[')
            .and_then(|l| l.find("]:"))
            .and_then(|close| line[close + 3..].split_whitespace().next());
        if let Some(target) = definition {
            targets.push(target.to_owned());
        }
    }
    targets
}

/// The anchors of a page's headings, as GitHub makes them: lower case,
/// letters, digits, `-` and `_` kept, spaces turned into `-`, everything
/// else dropped; a repeated anchor gets `-1`, `-2`, ...
fn heading_anchors(text: &str) -> HashSet<String> {
    let mut anchors = HashSet::new();
    for line in prose_lines(text) {
        let level = line.chars().take_while(|c| *c == '#').count();
        if level == 0 || level > 6 || !line[level..].starts_with(' ') {
            continue;
        }
        let slug: String = line[level..]
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while !anchors.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
    }
    anchors
}

#[test]
fn the_readme_is_short_and_starts_with_the_two_commands() {
    let readme = read(&repo_path("README.md"));
    let lines: Vec<&str> = readme.lines().collect();
    assert!(
        lines.len() <= README_MAX_LINES,
        "README.md has {} lines, at most {README_MAX_LINES}: move the rest to a page under docs/",
        lines.len()
    );
    let first_screen = &lines[..lines.len().min(FIRST_SCREEN_LINES)];
    for command in [RUN_COMMAND.to_owned(), ci_test_command()] {
        assert!(
            first_screen.iter().any(|line| line.trim() == command),
            "`{command}` on a line of its own in README.md's first {FIRST_SCREEN_LINES} lines"
        );
    }
}

#[test]
fn the_readme_links_every_page_under_docs() {
    let readme = read(&repo_path("README.md"));
    let targets: HashSet<String> = link_targets(&readme).into_iter().collect();
    let unlinked: Vec<String> = doc_pages()
        .iter()
        .map(|page| format!("docs/{}", page.file_name().unwrap().to_string_lossy()))
        .filter(|page| !targets.contains(page))
        .collect();
    assert!(
        unlinked.is_empty(),
        "README.md links no page {unlinked:?} (its links: {targets:?})"
    );
}

#[test]
fn every_relative_link_in_the_documentation_resolves() {
    let mut files = vec![repo_path("README.md")];
    files.extend(doc_pages());
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = read(file);
        let name = file.strip_prefix(repo_path("")).unwrap_or(file).display();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !resolved.exists() {
                broken.push(format!("{name}: `{target}`: no such file"));
                continue;
            }
            let is_page = resolved.extension().is_some_and(|ext| ext == "md");
            if let Some(anchor) = anchor.filter(|_| is_page) {
                if !heading_anchors(&read(&resolved)).contains(anchor) {
                    broken.push(format!("{name}: `{target}`: no heading with that anchor"));
                }
            }
        }
    }
    assert!(checked > 0, "the documentation has relative links");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_test_command_is_the_one_ci_runs() {
    let readme = read(&repo_path("README.md"));
    let ci = ci_test_command();
    let in_readme: Vec<&str> = readme
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("cargo nextest run"))
        .collect();
    assert_eq!(
        in_readme,
        [ci.as_str()],
        "README.md's test command is byte for byte the line `.ci/run` runs"
    );
}

#[test]
fn the_link_reader_finds_links_and_skips_code() {
    let text = "See [`a.md`](a.md#x) and ![img](b.svg \"t\").\n\
                `not [a](link)` and ``also `](` not``.\n\
                ```\n[c](in-a-fence.md)\n```\n\
                [ref]: c.md\n";
    assert_eq!(link_targets(text), ["a.md#x", "b.svg", "c.md"]);
    let anchors = heading_anchors(
        "# Finance\n## A customer's orders\n## §10 Conventions\n```\n# not a heading\n```\n## Finance\n",
    );
    for anchor in [
        "finance",
        "a-customers-orders",
        "10-conventions",
        "finance-1",
    ] {
        assert!(anchors.contains(anchor), "{anchor} in {anchors:?}");
    }
    assert!(!anchors.contains("not-a-heading"));
}
