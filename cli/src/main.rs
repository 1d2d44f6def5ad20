//! The `asdsl` command-line tool.
//!
//! Commands live in [`commands`], one module each; this file is the clap root
//! and the dispatch. Errors are reported with their whole chain of context and
//! a non-zero exit code that says what kind of error it is ([`exit`]).

mod commands;
mod default_model;
mod exit;
mod interrupt;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Quantized GEMV kernels for LLM decoding on CPUs, tuned on your machine.
#[derive(Debug, Parser)]
#[command(name = "asdsl", version, propagate_version = true)]
#[command(long_about = "Quantized GEMV kernels for LLM decoding on CPUs, tuned on your machine.\n\n\
    Decode speed is the speed of the quantized matrix-vector product. asdsl generates many \
    GEMV variants at build time, measures them on this machine and runs every matrix of a \
    model with the best one.\n\n\
    Environment: ASDSL_FORCE_ISA=scalar|avx2|avx512 caps the instruction set the kernels may \
    use (for testing and comparison); ASDSL_PLAN=FILE names the kernel plan to use; \
    ASDSL_MEMORY_LIMIT=SIZE|off replaces the available memory a model must fit in (default: \
    MemAvailable from /proc/meminfo; `512M`, `8G`, or `off` to disable the check); \
    ASDSL_PREFETCH=off|BYTES sets how far ahead the decode kernels prefetch weights (default: \
    off on AMD, 4096 elsewhere).\n\n\
    Thread counts (-t) must be between 1 and the logical cores of this machine; a context (-c) \
    may not exceed the model's trained context. Ctrl-C during generation stops it, prints the \
    text so far and the timings, and exits with 130.")]
#[command(after_help = exit::EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the CPU, its ISA features, cores, caches, the kernel ISA in use and the registry.
    #[command(long_about = commands::info::LONG_ABOUT)]
    Info(commands::info::InfoArgs),
    /// Measure memory read bandwidth (DRAM, L3, L2) and the GEMV speed ceiling it allows.
    #[command(long_about = commands::roofline::LONG_ABOUT, after_help = commands::roofline::AFTER_HELP)]
    Roofline(commands::roofline::RooflineArgs),
    /// Generate text with a model (Hugging Face folder, GGUF file, or a file of `asdsl quantize`).
    #[command(long_about = commands::generate::LONG_ABOUT)]
    Generate(commands::generate::GenerateArgs),
    /// Write the logits at every position of a prompt to a safetensors file.
    #[command(long_about = commands::logits::LONG_ABOUT)]
    Logits(commands::logits::LogitsArgs),
    /// Measure prompt and decode speed like llama-bench, with the share of the DRAM roofline.
    #[command(long_about = commands::bench::LONG_ABOUT, after_help = commands::bench::AFTER_HELP)]
    Bench(commands::bench::BenchArgs),
    /// Write a seeded random-weight model of a named geometry as a GGUF file (for llama.cpp too).
    #[command(long_about = commands::export::LONG_ABOUT, after_help = commands::export::AFTER_HELP)]
    Export(commands::export::ExportArgs),
    /// Perplexity of a model on a text (llama.cpp's method), and KL divergence against a saved base.
    #[command(long_about = commands::perplexity::LONG_ABOUT)]
    Perplexity(commands::perplexity::PerplexityArgs),
    /// Measure the kernel variants for a model's matrices on this machine and write the plan.
    #[command(long_about = commands::tune::long_about(), after_help = commands::tune::AFTER_HELP)]
    Tune(commands::tune::TuneArgs),
    /// Show a kernel plan, or where this machine's plan lives.
    #[command(long_about = commands::plan::LONG_ABOUT)]
    Plan(commands::plan::PlanArgs),
    /// Quantize a Hugging Face folder once into one safetensors file that loads in seconds.
    #[command(long_about = commands::quantize::LONG_ABOUT, after_help = commands::quantize::AFTER_HELP)]
    Quantize(commands::quantize::QuantizeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The kernels resolve the prefetch distance lazily, where an error has
    // nowhere to go: refuse an invalid ASDSL_PREFETCH here.
    if let Err(err) = asdsl_kernels::cpu::prefetch_distance() {
        eprintln!("error: {err}");
        return exit::Exit::Usage.into();
    }
    let result = match cli.command {
        Command::Info(args) => commands::info::run(&args),
        Command::Roofline(args) => commands::roofline::run(&args),
        Command::Generate(args) => commands::generate::run(&args),
        Command::Logits(args) => commands::logits::run(&args),
        Command::Bench(args) => commands::bench::run(&args),
        Command::Export(args) => commands::export::run(&args),
        Command::Perplexity(args) => commands::perplexity::run(&args),
        Command::Tune(args) => commands::tune::run(&args),
        Command::Plan(args) => commands::plan::run(&args),
        Command::Quantize(args) => commands::quantize::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = exit::classify(&err);
            let message = exit::message(&err);
            if code == exit::Exit::Interrupted {
                eprintln!("{message}");
            } else {
                eprintln!("error: {message}");
            }
            code.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
