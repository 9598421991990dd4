//! `chaos`: the fault-injection suite. Brings up an isolated stack of the real binaries (its own
//! database, queue prefix, Redis prefix, ports, call record; two dial workers), runs one fresh
//! campaign per scenario with a fault injected mid-campaign, checks the invariants against the
//! carrier-sim's record, the database and the API, prints one Markdown table, writes the
//! figures as JSON and exits non-zero on any violation.
//!
//! ```text
//! chaos [--scenarios a,b,c] [--contacts N] [--ingest-contacts N] [--json PATH]
//!       [--bin-dir DIR] [--lease-secs N] [--cps N] [--lines N] [--deadline-secs N] [--tolerate-17]
//!       [--keep] [--list]
//! ```
//!
//! The HA scenarios (`rabbitmq-node-loss`, `postgres-failover`, `postgres-failover-async`,
//! `redis-failover`, and `replication-cost`, which measures dials/s with synchronous against
//! asynchronous replication) each run on a fresh stack whose service is the HA one
//! (`deploy/local/ha.sh`, on ports and in a directory of their own); the others share one stack.
//! `--lines N` sets the job's `maxConcurrentDials` (the workspace gets N + 2).
//!
//! It starts and stops only its own processes (killed on exit, on Ctrl-C and on panic).

#[path = "chaos/check.rs"]
mod check;
#[path = "chaos/cost.rs"]
mod cost;
#[path = "chaos/ha.rs"]
mod ha;
#[path = "chaos/plan.rs"]
mod plan;
#[path = "chaos/proxy.rs"]
mod proxy;
#[path = "chaos/scenarios.rs"]
mod scenarios;
#[path = "chaos/stack.rs"]
mod stack;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

struct Args {
    scenarios: Vec<String>,
    contacts: usize,
    ingest_contacts: usize,
    json: PathBuf,
    bin_dir: PathBuf,
    lease_secs: u64,
    keep: bool,
    cps: u32,
    lines: u32,
    deadline: Option<u64>,
    tolerate_17: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: chaos [--scenarios a,b,c] [--contacts N] [--ingest-contacts N] [--json PATH] \
         [--bin-dir DIR] [--lease-secs N] [--cps N] [--lines N] [--deadline-secs N] [--tolerate-17] [--keep] \
         [--list]\nscenarios: {}",
        scenarios::ALL.join(", ")
    );
    std::process::exit(2)
}

fn parse() -> anyhow::Result<Args> {
    let exe = std::env::current_exe()?;
    let mut args = Args {
        scenarios: scenarios::ALL.iter().map(|s| s.to_string()).collect(),
        contacts: 300,
        ingest_contacts: 100_000,
        json: PathBuf::from("chaos-results.json"),
        bin_dir: exe.parent().context("exe dir")?.to_owned(),
        lease_secs: 6,
        keep: false,
        cps: 10,
        lines: 8,
        deadline: None,
        tolerate_17: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--scenarios" => {
                args.scenarios = value().split(',').map(|s| s.trim().to_owned()).collect();
            }
            "--contacts" => args.contacts = value().parse()?,
            "--ingest-contacts" => args.ingest_contacts = value().parse()?,
            "--json" => args.json = value().into(),
            "--bin-dir" => args.bin_dir = value().into(),
            "--lease-secs" => args.lease_secs = value().parse()?,
            "--cps" => args.cps = value().parse()?,
            "--lines" => args.lines = value().parse()?,
            "--deadline-secs" => args.deadline = Some(value().parse()?),
            "--tolerate-17" => args.tolerate_17 = true,
            "--keep" => args.keep = true,
            "--list" => {
                println!("{}", scenarios::ALL.join("\n"));
                std::process::exit(0)
            }
            _ => usage(),
        }
    }
    for s in &args.scenarios {
        if !scenarios::ALL.contains(&s.as_str()) {
            eprintln!("unknown scenario {s}");
            usage();
        }
    }
    Ok(args)
}

/// Ctrl-C, SIGTERM or SIGHUP: the run stops and every process it started is stopped.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            return ExitCode::from(2);
        }
    };
    for bin in [
        "api-gateway",
        "ingest-worker",
        "scheduler",
        "dial-worker",
        "carrier-sim",
    ] {
        if !args.bin_dir.join(bin).exists() {
            eprintln!(
                "chaos: {} not found in {} (build the roles first: cargo build --bins)",
                bin,
                args.bin_dir.display()
            );
            return ExitCode::from(2);
        }
    }
    let plan = scenarios::Plan {
        contacts: args.contacts,
        ingest_contacts: args.ingest_contacts,
        job_limit: args.lines,
        workspace_limit: args.lines + 2,
        cps: args.cps,
        deadline: args.deadline.map(std::time::Duration::from_secs),
        tolerate_17: args.tolerate_17,
    };
    // One stack for the scenarios on the single-node services, one fresh stack per HA scenario
    // (its fault is for good: a node lost, a standby promoted).
    let mut groups: Vec<Group> = Vec::new();
    let plain: Vec<(usize, String)> = args
        .scenarios
        .iter()
        .enumerate()
        .filter(|(_, s)| scenarios::ha_parts(s).is_none())
        .map(|(i, s)| (i, s.clone()))
        .collect();
    if !plain.is_empty() {
        groups.push((plain, Vec::new(), true));
    }
    for (i, s) in args.scenarios.iter().enumerate() {
        if let Some((parts, sync)) = scenarios::ha_parts(s) {
            groups.push((vec![(i, s.clone())], parts, sync));
        }
    }
    let mut results = Vec::new();
    let mut interrupted_run = false;
    let mut failed_start = false;
    let mut no_ha = 0;
    for (names, ha_parts, ha_sync) in groups {
        let opts = stack::Options {
            bin_dir: args.bin_dir.clone(),
            own_postgres: names.iter().any(|(_, s)| s == "postgres"),
            lease_secs: args.lease_secs,
            keep: args.keep,
            ha_parts,
            ha_sync,
        };
        match run_group(opts, &names, &plan, &mut results).await {
            Outcome::Done => {}
            Outcome::Interrupted => {
                interrupted_run = true;
                break;
            }
            Outcome::NoStack => failed_start = true,
            Outcome::NoHa => no_ha += 1,
        }
    }
    println!("{}", check::table(&results));
    let json = serde_json::json!({
        "contacts": args.contacts,
        "leaseSecs": args.lease_secs,
        "jobLimit": plan.job_limit,
        "workspaceLimit": plan.workspace_limit,
        "cps": plan.cps,
        "results": results,
    });
    if let Err(e) = std::fs::write(
        &args.json,
        serde_json::to_vec_pretty(&json).unwrap_or_default(),
    ) {
        eprintln!("chaos: cannot write {}: {e}", args.json.display());
    }
    if interrupted_run {
        return ExitCode::from(130);
    }
    if failed_start {
        return ExitCode::from(2);
    }
    // (Each HA group holds one scenario, so one NoHa is one row.)
    if no_ha > 0 && no_ha == results.len() {
        // Told apart so CI can skip, saying why, where the HA stack cannot start.
        return ExitCode::from(3);
    }
    if results.iter().any(|f| !f.violations.is_empty()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Scenarios (index, name) run on one stack, its HA parts, and whether its standby is
/// synchronous.
type Group = (Vec<(usize, String)>, Vec<&'static str>, bool);

enum Outcome {
    Done,
    Interrupted,
    NoStack,
    /// `deploy/local/ha.sh` could not start the HA stack (packages missing, ports taken).
    NoHa,
}

/// Starts a stack with `opts`, runs `names` on it (index, name), stops it.
async fn run_group(
    opts: stack::Options,
    names: &[(usize, String)],
    plan: &scenarios::Plan,
    results: &mut Vec<check::Figures>,
) -> Outcome {
    eprintln!(
        "chaos: starting the stack{}",
        if opts.ha_parts.is_empty() {
            String::new()
        } else {
            format!(" (HA: {})", opts.ha_parts.join(", "))
        }
    );
    let ha = !opts.ha_parts.is_empty();
    let mut stack = tokio::select! {
        s = stack::Stack::start(opts) => match s {
            Ok(s) => s,
            Err(e) => {
                let text = format!("{e:#}");
                eprintln!("chaos: the stack did not start: {text}");
                if ha && text.contains("ha.sh") {
                    // In the table too, so a full run cannot pass without its HA scenarios.
                    for (_, name) in names {
                        results.push(check::Figures {
                            scenario: name.clone(),
                            violations: vec![format!("the HA stack did not start: {text}")],
                            ..Default::default()
                        });
                    }
                    return Outcome::NoHa;
                }
                return Outcome::NoStack;
            }
        },
        () = interrupted() => return Outcome::Interrupted,
    };
    eprintln!("chaos: stack up in {}", stack.dir.display());
    let interrupted = {
        let run = async {
            for (index, name) in names {
                eprintln!("chaos: scenario {name}");
                let f = scenarios::run(&mut stack, name, *index, plan).await;
                eprintln!(
                    "chaos: {name}: {} in {:.0} s",
                    if f.violations.is_empty() {
                        "pass".to_owned()
                    } else {
                        f.violations.join("; ")
                    },
                    f.duration_s
                );
                results.push(f);
            }
        };
        tokio::select! {
            () = run => false,
            () = interrupted() => true,
        }
    };
    stack.shutdown().await;
    if interrupted {
        Outcome::Interrupted
    } else {
        Outcome::Done
    }
}
