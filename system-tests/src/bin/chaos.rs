//! `chaos`: the fault-injection suite. Brings up an isolated stack of the real binaries (its own
//! database, queue prefix, Redis prefix, ports, call record; two dial workers), runs one fresh
//! campaign per scenario with a fault injected mid-campaign, checks the invariants against the
//! carrier-sim's record, the database and the API, prints one Markdown table, writes the
//! figures as JSON and exits non-zero on any violation.
//!
//! ```text
//! chaos [--scenarios a,b,c] [--contacts N] [--ingest-contacts N] [--json PATH]
//!       [--bin-dir DIR] [--lease-secs N] [--cps N] [--deadline-secs N] [--tolerate-17]
//!       [--keep] [--list]
//! ```
//!
//! It starts and stops only its own processes (killed on exit, on Ctrl-C and on panic).

#[path = "chaos/check.rs"]
mod check;
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
    deadline: Option<u64>,
    tolerate_17: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: chaos [--scenarios a,b,c] [--contacts N] [--ingest-contacts N] [--json PATH] \
         [--bin-dir DIR] [--lease-secs N] [--cps N] [--deadline-secs N] [--tolerate-17] [--keep] \
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
    let opts = stack::Options {
        bin_dir: args.bin_dir.clone(),
        own_postgres: args.scenarios.iter().any(|s| s == "postgres"),
        lease_secs: args.lease_secs,
        keep: args.keep,
    };
    let plan = scenarios::Plan {
        contacts: args.contacts,
        ingest_contacts: args.ingest_contacts,
        job_limit: 8,
        workspace_limit: 10,
        cps: args.cps,
        deadline: args.deadline.map(std::time::Duration::from_secs),
        tolerate_17: args.tolerate_17,
    };
    eprintln!("chaos: starting the stack");
    let mut stack = tokio::select! {
        s = stack::Stack::start(opts) => match s {
            Ok(s) => s,
            Err(e) => {
                eprintln!("chaos: the stack did not start: {e:#}");
                return ExitCode::from(2);
            }
        },
        () = interrupted() => return ExitCode::from(130),
    };
    eprintln!("chaos: stack up in {}", stack.dir.display());
    let mut results = Vec::new();
    let interrupted = {
        let run = async {
            for (i, name) in args.scenarios.iter().enumerate() {
                let index = i;
                eprintln!("chaos: scenario {name}");
                let f = scenarios::run(&mut stack, name, index, &plan).await;
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
    if interrupted {
        return ExitCode::from(130);
    }
    if results.iter().any(|f| !f.violations.is_empty()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
