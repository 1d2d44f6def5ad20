//! `asdsl plan`: show a plan for people, or where the plan of this machine lives.

use std::path::PathBuf;

use anyhow::{Context, Result};
use asdsl_kernels::tune::plan::{self, ChoiceSource, Plan, PlanStatus};
use clap::{Args, Subcommand};

use super::tune::partition_text;

/// The long help of `asdsl plan`.
pub const LONG_ABOUT: &str = "Inspect kernel plans (written by `asdsl tune`).\n\n\
    A plan is used only on the machine and asdsl build it was tuned for; `show` says whether this \
    machine would use it and, if not, exactly why. The plan file asdsl uses is --plan FILE where a \
    command takes it, else $ASDSL_PLAN, else the default plan of this machine in the user cache \
    directory ($XDG_CACHE_HOME/asdsl or ~/.cache/asdsl).";

/// Arguments of `asdsl plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(subcommand)]
    pub command: PlanCommand,
}

/// `asdsl plan` subcommands.
#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Print a plan: machine, build, and per matrix and thread count the chosen variant and its speed.
    Show {
        /// The plan file (default: $ASDSL_PLAN, else this machine's default plan).
        file: Option<PathBuf>,
    },
    /// Print the path of the plan asdsl would use, and whether it would use it.
    Path,
}

/// Runs `asdsl plan`.
pub fn run(args: &PlanArgs) -> Result<()> {
    match &args.command {
        PlanCommand::Show { file } => show(file.clone()),
        PlanCommand::Path => {
            let loaded = plan::LoadedPlan::load(None);
            match plan::resolve_path(None) {
                Some((path, origin)) => println!("{} ({origin:?})", path.display()),
                None => println!("no plan location (no HOME or XDG_CACHE_HOME)"),
            }
            println!("{}", loaded.status);
            Ok(())
        }
    }
}

fn show(file: Option<PathBuf>) -> Result<()> {
    let path = match file {
        Some(p) => p,
        None => plan::resolve_path(None).map(|(p, _)| p).context("no plan location (give a FILE)")?,
    };
    let plan = Plan::read(&path).with_context(|| format!("reading the plan {}", path.display()))?;
    println!("plan {}", path.display());
    println!("  format version {}, tuned by asdsl {}", plan.version, plan.asdsl_version);
    println!("  machine: {}", plan.fingerprint.summary());
    println!("  features: {}", plan.fingerprint.features.join(" "));
    println!("  registry {} ({} variants)", plan.registry_hash, plan.registry_variants);
    let age = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().saturating_sub(plan.created_unix))
        .unwrap_or(0);
    println!(
        "  written {} (unix {}), tuning took {:.1} s of a {:.0} s budget",
        ago(age),
        plan.created_unix,
        plan.tune_secs,
        plan.budget_secs
    );
    if !plan.roofline.is_empty() {
        let bw: Vec<String> =
            plan.roofline.iter().map(|r| format!("{} thread(s) {:.1} GB/s", r.threads, r.gbs)).collect();
        println!("  DRAM read bandwidth: {}", bw.join(", "));
    }
    let usable = plan.check(&path);
    match &usable {
        Ok(()) => {
            println!("  on this machine: {}", PlanStatus::Used { path: path.clone(), entries: plan.entries.len() })
        }
        Err(err) => println!("  on this machine: refused: {err}"),
    }
    println!();
    println!(
        "{:<24} {:>3} | {:<32} {:<8} {:>9} {:>6} {:>6} {:>7} | runners-up",
        "matrix", "thr", "variant", "split", "us/call", "GB/s", "roof", "x heur"
    );
    println!("{}", "-".repeat(130));
    let mut entries: Vec<_> = plan.entries.iter().collect();
    entries.sort_by_key(|e| (e.key, e.threads));
    for e in entries {
        let c = &e.choice;
        let runners: Vec<String> = e
            .runners_up
            .iter()
            .map(|m| format!("{} {} +{:.1}%", m.variant, partition_text(&m.partition), 100.0 * (m.secs / c.secs - 1.0)))
            .collect();
        println!(
            "{:<24} {:>3} | {:<32} {:<8} {:>9.1} {:>6.2} {:>6} {:>7} | {}",
            e.key.to_string(),
            e.threads,
            c.variant,
            partition_text(&c.partition),
            c.secs * 1e6,
            c.gbs,
            c.roofline_pct.map_or("-".into(), |p| format!("{p:.0} %")),
            e.heuristic.as_ref().map_or("-".into(), |h| format!("{:.2}", h.secs / c.secs)),
            runners.join(", ")
        );
        if usable.is_ok()
            && let Ok(choice) = plan.choose(&e.key, e.threads)
            && let ChoiceSource::Heuristic(reason) = choice.source
        {
            println!("    not used here: {reason}; the heuristic default {} runs instead", choice.variant.name);
        }
    }
    Ok(())
}

fn ago(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86400),
    }
}
