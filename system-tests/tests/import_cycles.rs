//! No crate's modules import each other in a circle: a circle is where a reader following a
//! call goes back and forth between files, and where one module cannot be understood without
//! the others. The graph is `scripts/import-cycles.py`'s (every `use crate::`/`super::` tree and
//! inline path, inline test modules left out); this test runs it over every crate's `src/`.

use std::path::Path;
use std::process::Command;

/// Every crate whose modules are held to it.
const CRATES: [&str; 8] = [
    "shared",
    "api-gateway",
    "ingest-worker",
    "scheduler",
    "dial-worker",
    "carrier-sim",
    "testkit",
    "system-tests",
];

#[test]
fn no_crate_has_an_import_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut args = vec![root.join("scripts/import-cycles.py")];
    args.extend(CRATES.iter().map(|c| root.join(c).join("src")));
    let out = Command::new("python3")
        .args(&args)
        .output()
        .expect("python3 runs (the machine's own, as scripts/ uses)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let circles: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("cycle(s)") && !l.ends_with(" 0 cycle(s)"))
        .collect();
    assert!(circles.is_empty(), "import circles:\n{report}");
    assert_eq!(
        report.lines().filter(|l| l.contains("cycle(s)")).count(),
        CRATES.len(),
        "one summary line per crate:\n{report}"
    );
}
