//! The README's quickstart, run as written: its ```sh blocks, in order, in one bash (as a reader
//! pastes them into one shell), against a stack of every role with the workspace a fresh
//! `deploy/local/up.sh` gives (the safe compliance policy, 1 call a second, no caller ID of its
//! own). Each block must run to its end, and print what the ```text block after it says, line by
//! line (`…` stands for anything), so the README's examples cannot rot.

use std::time::Duration;

use chrono::{Datelike, TimeZone};

/// One ```sh block of the quickstart and the output the README shows after it.
struct Example {
    script: String,
    expected: Vec<String>,
}

/// The fenced blocks of the README's "Quickstart" section: each ```sh block with the ```text
/// block that follows it (before the next ```sh), if any.
fn quickstart(readme: &str) -> Vec<Example> {
    let start = readme
        .find("\n## Quickstart\n")
        .expect("the README has a Quickstart section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut examples: Vec<Example> = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        let lang = match line.strip_prefix("```") {
            Some(lang) if !lang.is_empty() => lang.trim().to_owned(),
            _ => continue,
        };
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        match lang.as_str() {
            "sh" => examples.push(Example {
                script: body.join("\n"),
                expected: Vec::new(),
            }),
            "text" => {
                let last = examples
                    .last_mut()
                    .expect("an output block follows a command block");
                last.expected = body.iter().map(|l| l.to_string()).collect();
            }
            other => panic!("the quickstart has a ```{other} block; only sh and text are run"),
        }
    }
    examples
}

/// Whether `line` is `pattern`, where `…` in the pattern stands for any text.
fn matches(pattern: &str, line: &str) -> bool {
    let mut parts = pattern.split('…');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// The shift that puts the scheduler's and dial workers' clock at 12:00 in New York today, so
/// the recipients' calling hours (08:00–21:00 their time, the safe default the quickstart runs
/// under) are open whatever the hour the test runs at. The quickstart's numbers (201) name no
/// single state, so every state rule of the pack applies to them (docs/jurisdiction-rules.md):
/// on a Sunday or an Alabama holiday the noon of the next day that allows them is taken.
fn noon_in_new_york() -> i64 {
    use shared::compliance::enforce::{Contact, Policy, shipped_pack};
    let now = chrono::Utc::now();
    let zones = shared::compliance::zones_for_number("+12015550123");
    let job = shared::schedule::Window::default();
    let rules = Policy {
        pack: shipped_pack(),
        mode: shared::compliance::jurisdiction::RuleMode::Strictest,
        job: &job,
        hours: Some(shared::compliance::RecipientHours::DEFAULT),
        allow_unknown_timezone: false,
    };
    let contact = Contact {
        number: "+12015550123",
        zones: &zones,
        declared_state: None,
        postal_state: None,
    };
    let mut day = now
        .with_timezone(&chrono_tz::America::New_York)
        .date_naive();
    let noon = loop {
        let noon = chrono_tz::America::New_York
            .with_ymd_and_hms(day.year(), day.month(), day.day(), 12, 0, 0)
            .single()
            .expect("noon exists every day")
            .with_timezone(&chrono::Utc);
        if rules.judge(&contact, &[], noon).is_none() {
            break noon;
        }
        day = day.succ_opt().expect("a next day");
    };
    (noon - now).num_seconds()
}

#[tokio::test]
async fn the_readme_quickstart_runs_as_written() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let examples = quickstart(&readme);
    assert!(
        examples.len() >= 3,
        "the quickstart has its set-up block and one campaign through each API"
    );

    let stack = system_tests::stack::Stack::builder("quickstart")
        .compliance(api_gateway::admin::Compliance::default())
        .default_workspace_rate()
        .numbers(&[])
        .clock_offset_secs(noon_in_new_york())
        .start()
        .await;

    let mut script = String::from("set -euo pipefail\n");
    for (i, example) in examples.iter().enumerate() {
        script.push_str(&format!(
            "echo '@@block {i}'\n{}\necho '@@end {i}'\n",
            example.script
        ));
    }
    let run = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(root)
        .env("DIALFLEET_URL", &stack.gateway)
        .env("API_KEY", &stack.key)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the quickstart finishes within 3 minutes")
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);

    for (i, example) in examples.iter().enumerate() {
        let begin = format!("@@block {i}\n");
        let end = format!("@@end {i}\n");
        let (Some(b), Some(e)) = (stdout.find(&begin), stdout.find(&end)) else {
            panic!(
                "block {i} did not run to its end (exit {:?}):\n{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                out.status.code(),
                example.script
            );
        };
        let printed: Vec<&str> = stdout[b + begin.len()..e].lines().collect();
        let mut at = 0;
        for want in &example.expected {
            match printed[at..].iter().position(|line| matches(want, line)) {
                Some(found) => at += found + 1,
                None => panic!(
                    "block {i} should print a line {want:?} (after the lines matched before it); it printed:\n{}\n--- stderr\n{stderr}",
                    printed.join("\n")
                ),
            }
        }
    }
    assert!(out.status.success(), "bash exited {:?}", out.status.code());
}

#[test]
fn the_output_patterns_match_as_the_readme_means_them() {
    assert!(matches("agent …", "agent 0193abcd"));
    assert!(matches("job …", "job x"));
    assert!(!matches("job …", "batch x"));
    assert!(matches("ACTIVE", "ACTIVE"));
    assert!(!matches("ACTIVE", "ACTIVE2"));
    assert!(matches("a…b…c", "a12b34c"));
    assert!(!matches("a…b…c", "a12b34"));
}
