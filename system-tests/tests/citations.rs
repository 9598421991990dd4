//! Every citation resolves inside the repository. Code and documents cite markdown files
//! (`docs/….md`, a README), anchors in them, and the invariants of docs/architecture.md by
//! number; a citation of a file that is not in the repository, of an anchor no heading makes,
//! or of an invariant the architecture does not define leaves the next reader nowhere. This
//! scans every `*.rs`, `*.md`, `*.sh` and `*.yaml` file and lists each one that does not
//! resolve. It needs no service.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// Pages other branches of the same issue add (security and input validation, issue #29): a
/// citation of one is accepted while it is missing, and checked like any other once it is
/// there. Empty this list once they are merged.
const AWAITED: &[&str] = &[];

/// Directories never scanned: build output, local state, version control.
const SKIPPED_DIRS: &[&str] = &["target", ".git", ".dialfleet", "node_modules"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("system-tests lives in the workspace")
        .to_path_buf()
}

/// Every file of the repository with one of the scanned extensions.
fn scanned_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_str()) {
                scanned_files(&path, out);
            }
        } else if ["rs", "md", "sh", "yaml", "yml"]
            .iter()
            .any(|ext| path.extension().is_some_and(|e| e == *ext))
        {
            out.push(path);
        }
    }
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The lines of a markdown text outside fenced code blocks, with their numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// The anchors a markdown file defines: one per heading (GitHub's numbering of repeats), and
/// any `<a id="…">` / `<a name="…">`.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        if let Some(heading) = line.strip_prefix('#') {
            let heading = heading.trim_start_matches('#');
            if heading.starts_with(' ') {
                let base = slug(heading);
                let n = seen.entry(base.clone()).or_insert(0);
                out.insert(match *n {
                    0 => base.clone(),
                    k => format!("{base}-{k}"),
                });
                *n += 1;
            }
        }
        for marker in ["<a id=\"", "<a name=\""] {
            let mut rest = line;
            while let Some(at) = rest.find(marker) {
                rest = &rest[at + marker.len()..];
                if let Some(end) = rest.find('"') {
                    out.insert(rest[..end].to_owned());
                }
            }
        }
    }
    out
}

/// The invariants docs/architecture.md defines: the numbered items of its "Invariants" section.
fn defined_invariants(architecture: &str) -> BTreeSet<u32> {
    let mut inside = false;
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(architecture) {
        if line.starts_with("## ") {
            inside = line.trim() == "## Invariants";
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((number, rest)) = line.split_once(". ")
            && rest.starts_with("**")
            && let Ok(n) = number.parse()
        {
            out.insert(n);
        }
    }
    out
}

/// One citation found in a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Citation {
    /// A markdown link's target (`[x](target)`), relative to the linking file.
    Link(String),
    /// A path to a markdown file named in text or code, with an optional `#anchor`.
    Mention(String),
    /// "invariant N".
    Invariant(u32),
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// Every markdown file named in `line` (`docs/api.md`, `README.md#quickstart`, `../x.md`).
fn mentions(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(at) = line[from..].find(".md") {
        let end = from + at + 3;
        from = end;
        if line[end..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue; // `.mdx`, `.md5`…
        }
        let start = line[..end - 3]
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_path_char(*c))
            .last()
            .map_or(end - 3, |(i, _)| i);
        let path = &line[start..end];
        // Part of a URL (`https://…/x.md`), an absolute path or a path under a shell variable
        // (`$out/table.md`, a file a script writes): not a citation of this repository.
        if path.starts_with('/')
            || path == ".md"
            || (start > 0 && matches!(bytes[start - 1], b':' | b'$' | b'}'))
        {
            continue;
        }
        let mut cited = path.to_owned();
        if line[end..].starts_with('#') {
            let anchor: String = line[end + 1..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            if !anchor.is_empty() {
                cited = format!("{path}#{anchor}");
            }
        }
        out.push(cited);
    }
    out
}

/// Every `[text](target)` target in `line` that is not a URL.
fn links(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split_whitespace().next().unwrap_or_default();
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            out.push(target.to_owned());
        }
    }
    out
}

/// Every "invariant N" (any case, "invariants N" too) in `line`.
fn invariants(line: &str) -> Vec<u32> {
    let lower = line.to_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find("invariant") {
        let mut rest = &lower[from + at + "invariant".len()..];
        from += at + "invariant".len();
        rest = rest.strip_prefix('s').unwrap_or(rest);
        let Some(rest) = rest.strip_prefix(' ') else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse() {
            out.push(n);
        }
    }
    out
}

/// Every citation in one file, with its line number.
fn citations(path: &Path, text: &str) -> Vec<(usize, Citation)> {
    let markdown = path.extension().is_some_and(|e| e == "md");
    let lines: Vec<(usize, &str)> = match markdown {
        true => prose_lines(text),
        false => text.lines().enumerate().map(|(i, l)| (i + 1, l)).collect(),
    };
    let mut out = Vec::new();
    for (n, line) in lines {
        let linked = match markdown {
            true => links(line),
            false => Vec::new(),
        };
        for target in &linked {
            out.push((n, Citation::Link(target.clone())));
        }
        for mention in mentions(line) {
            // A link's own target is checked as a link (relative to its file, strictly).
            if !linked.iter().any(|l| l == &mention) {
                out.push((n, Citation::Mention(mention)));
            }
        }
        for number in invariants(line) {
            out.push((n, Citation::Invariant(number)));
        }
    }
    out
}

/// Checks citations against the repository, caching each markdown file's anchors.
struct Resolver {
    root: PathBuf,
    invariants: BTreeSet<u32>,
    anchors: BTreeMap<PathBuf, BTreeSet<String>>,
}

impl Resolver {
    fn anchors_of(&mut self, file: &Path) -> &BTreeSet<String> {
        self.anchors
            .entry(file.to_path_buf())
            .or_insert_with(|| anchors(&std::fs::read_to_string(file).unwrap_or_default()))
    }

    fn awaited(&self, file: &Path) -> bool {
        AWAITED.iter().any(|a| self.root.join(a) == file) && !file.exists()
    }

    /// Whether `target` (`path#anchor`, `path` or `#anchor`) resolves from one of `bases`;
    /// `Err` says why not.
    fn resolve(&mut self, from: &Path, target: &str, bases: &[PathBuf]) -> Result<(), String> {
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (target, None),
        };
        let file = match path.is_empty() {
            true => from.to_path_buf(),
            false => {
                let candidates: Vec<PathBuf> =
                    bases.iter().map(|b| normalize(&b.join(path))).collect();
                match candidates.iter().find(|c| c.exists()) {
                    Some(found) => found.clone(),
                    None if candidates.iter().any(|c| self.awaited(c)) => return Ok(()),
                    None => return Err("no such file in the repository".into()),
                }
            }
        };
        let Some(anchor) = anchor else { return Ok(()) };
        if file.extension().is_none_or(|e| e != "md") {
            return Ok(());
        }
        match self.anchors_of(&file).contains(anchor) {
            true => Ok(()),
            false => Err(format!("no heading makes #{anchor} in {}", file.display())),
        }
    }
}

#[test]
fn every_citation_resolves_inside_the_repository() {
    let root = root();
    let architecture = std::fs::read_to_string(root.join("docs/architecture.md"))
        .expect("docs/architecture.md exists");
    let mut resolver = Resolver {
        invariants: defined_invariants(&architecture),
        anchors: BTreeMap::new(),
        root: root.clone(),
    };
    assert!(
        resolver.invariants.len() >= 13,
        "docs/architecture.md numbers its invariants: {:?}",
        resolver.invariants
    );

    let mut files = Vec::new();
    scanned_files(&root, &mut files);
    files.sort();
    let this_file = root.join("system-tests/tests/citations.rs");
    let mut dangling = Vec::new();
    let mut checked = 0;
    for file in files.iter().filter(|f| **f != this_file) {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let dir = file.parent().unwrap_or(&root).to_path_buf();
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for (line, citation) in citations(file, &text) {
            checked += 1;
            let verdict = match &citation {
                Citation::Link(target) => {
                    resolver.resolve(file, target, std::slice::from_ref(&dir))
                }
                Citation::Mention(target) => {
                    resolver.resolve(file, target, &[dir.clone(), root.clone()])
                }
                Citation::Invariant(n) => match resolver.invariants.contains(n) {
                    true => Ok(()),
                    false => Err("docs/architecture.md defines no such invariant".into()),
                },
            };
            if let Err(why) = verdict {
                dangling.push(format!("{shown}:{line}: {citation:?}: {why}"));
            }
        }
    }
    assert!(checked > 100, "the scan found the citations ({checked})");
    assert!(
        dangling.is_empty(),
        "{} dangling citation(s):\n{}",
        dangling.len(),
        dangling.join("\n")
    );
}

#[test]
fn the_scanner_reads_citations_as_written() {
    assert_eq!(
        slug("Ingest: 100,000 contacts, streamed"),
        "ingest-100000-contacts-streamed"
    );
    assert_eq!(
        slug("Do-not-call list: `POST /api/dnc`"),
        "do-not-call-list-post-apidnc"
    );
    assert_eq!(
        slug("Degrade, don't collapse: the Redis window"),
        "degrade-dont-collapse-the-redis-window"
    );
    assert_eq!(
        mentions("see docs/api.md#webhooks and (docs/x.md), not https://e.com/a.md"),
        vec!["docs/api.md#webhooks".to_owned(), "docs/x.md".to_owned()]
    );
    assert_eq!(
        links("[a](api.md#x) [b](https://e.com) [c](../README.md \"t\")"),
        vec!["api.md#x".to_owned(), "../README.md".to_owned()]
    );
    assert_eq!(
        invariants("(invariant 11; Invariant 4) invariants 14"),
        vec![11, 4, 14]
    );
    let arch = "## Invariants\n\n1. **One.** x\n2. **Two.**\n\n## Next\n\n3. **no**\n";
    assert_eq!(defined_invariants(arch), BTreeSet::from([1, 2]));
    let doc = "# A\n## B c\n```\n# not a heading\n```\n## B c\n<a id=\"x\"></a>\n";
    assert_eq!(
        anchors(doc),
        BTreeSet::from(["a".into(), "b-c".into(), "b-c-1".into(), "x".into()])
    );
}
