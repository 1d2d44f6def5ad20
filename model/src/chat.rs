//! Chat templates: the Jinja template of a model (GGUF
//! `tokenizer.chat_template` or tokenizer_config.json `chat_template`)
//! rendered with minijinja. Templates come from model files, so rendering is
//! bounded: a fuel limit on instructions, a recursion limit, a cap on the
//! output size, and a cap on the size arguments of the filters that would
//! otherwise allocate as much as a number in the template asks (`indent`,
//! `tojson(indent=...)`, `batch`, `slice`, and the widths of `format`); a
//! template that exceeds them ends with an error.
//!
//! The `*` operator is refused before rendering: minijinja repeats a string
//! up to 100 MB per operation, but a sequence lazily and without any bound,
//! so `{{ [1, 2] * 268906890757 ~ '' }}` runs for hours on one instruction
//! of fuel (found by fuzzing: fuzz/regressions/chat_template/). Chat
//! templates have no use for it.
//!
//! Everything a render formats with `{{ ... }}` counts against a budget of
//! [`RENDER_BUDGET_FACTOR`] times the output cap, including what macros,
//! `call` and `set` blocks capture and never print: a macro that calls itself
//! three times and returns its result formatted (as a list of characters,
//! say) grows its text exponentially with the depth, in little fuel (found
//! by fuzzing: fuzz/regressions/chat_template/). The values that every
//! filter and string method takes and returns count against the same
//! budget (a sequence or map [`ITEM_BYTES`] per item), so that a chain of
//! filters that each turn a string into a list of its characters and back
//! cannot do seconds of work in one expression (found by fuzzing: the same
//! folder); the filters and methods whose result can be many times their
//! input (`replace`, `join`, `indent`, `format`) are refused before they run
//! when a bound of their result exceeds what is left of the budget.
//!
//! Values nested as deep as the fuel allows (a namespace attribute wrapped
//! in a list once per loop iteration) are dropped and printed recursively by
//! minijinja: rendering runs on a thread whose stack is sized by the fuel
//! ([`STACK_PER_FUEL`]), so that such a value cannot overflow it (found by
//! fuzzing: a segmentation fault on the fuzzer's 8 MiB main stack).
//!
//! A panic of minijinja itself (two were found by fuzzing, both in its
//! format-string parser, and are refused before they run) ends the render
//! with [`ChatError::EnginePanic`] instead of ending the program; the fuzz
//! target turns that error back into a panic, so the fuzzer still finds them.
//!
//! Not bounded: operators (`~` and `+` concatenation, comparisons, `in`)
//! on values the template already holds; fuel bounds how many such
//! operations run, not their size, so a
//! loop that doubles a string in a namespace can still allocate 2^n bytes in
//! n steps, and a value that holds itself twice, n times over, makes
//! `string` or `tojson` walk 2^n paths.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use minijinja::value::{Rest, ValueKind};
use minijinja::{Environment, ErrorKind, State, Value};
use serde::Serialize;
use thiserror::Error;

/// Instructions a template may execute (minijinja fuel). SmolLM2's
/// template takes 62 for a two-message prompt and about 23 per message
/// (2,316 for 100 messages), so this leaves room for templates many times
/// as busy over long conversations.
pub const DEFAULT_FUEL: u64 = 250_000;
/// Stack of the rendering thread per unit of fuel. A template can nest a
/// value one level deeper per instruction (`{% set ns.x = [ns.x] %}` in a
/// loop), and dropping, printing or serializing the value recurses once per
/// level: at most 372 bytes of stack per level in a release build (measured
/// for printing; `tojson` takes 178, a drop 65 to 194, and `pprint`, which
/// is refused, 488). So the thread's stack is sized for the deepest value
/// the fuel can build, with a margin of two or more; it is reserved, and
/// touched only as deep as a template nests.
pub const STACK_PER_FUEL: usize = 1024;
/// Stack of the rendering thread before [`STACK_PER_FUEL`]: the parser and
/// the macro recursion (bounded by the recursion limit) run on it.
pub const RENDER_STACK_BASE: usize = 8 << 20;
/// Nesting depth of macros, includes and recursive loops.
pub const DEFAULT_RECURSION_LIMIT: usize = 64;
/// Largest rendered prompt, in bytes.
pub const DEFAULT_MAX_OUTPUT: usize = 4 << 20;
/// Bytes a render may format with `{{ ... }}` (captured text included) and
/// pass into and get out of filters and string methods, as a multiple of
/// its output cap.
pub const RENDER_BUDGET_FACTOR: usize = 4;
/// What a sequence or map counts per item against the render budget when
/// a filter or method takes or returns it (its items are values the render
/// already holds, counted when they were made).
pub const ITEM_BYTES: usize = 16;
/// Largest size argument a filter takes (an `indent` width, a `batch`
/// count, a `format` field width or precision).
pub const MAX_FILTER_SIZE: usize = 4096;

/// Filters whose numeric arguments size an allocation: each runs behind a
/// check of its arguments, the builtin itself registered under a name with
/// a random suffix per render, so that a template cannot call it unguarded
/// (fuzzing found templates that did: fuzz/regressions/chat_template/).
const GUARDED_FILTERS: &[&str] = &["indent", "tojson", "batch", "slice", "format"];

/// Registers minijinja's builtin filters under hidden names (`hidden(name)`)
/// and gives their public names, for the metered wrappers. Not here:
/// `default`, `d`, `attr`, `bool`, `round` and `abs`, whose work does not
/// grow with their input, and `pprint`, which is refused.
macro_rules! hide_builtin_filters {
    ($env:ident, $hidden:ident; $($name:literal => $filter:path),* $(,)?) => {{
        $( $env.add_filter($hidden($name), $filter); )*
        [$($name),*]
    }};
}

/// Errors of chat template rendering.
#[derive(Debug, Error)]
pub enum ChatError {
    /// The model has no chat template.
    #[error("the model has no chat template")]
    NoTemplate,
    /// The template does not parse or fails while rendering (including
    /// `raise_exception` calls and exhausted fuel).
    #[error("chat template: {0}")]
    Template(String),
    /// The rendered text would exceed the output cap.
    #[error("chat template output exceeds {0} bytes")]
    OutputTooLarge(usize),
    /// The template engine panicked on this template: a bug in minijinja
    /// that none of this module's guards catches yet (the message is the
    /// panic's).
    #[error("chat template: the template engine (minijinja) failed on this template: {0}")]
    EnginePanic(String),
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// A chat template with the special-token texts it may use.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
    /// Instruction budget per render.
    pub fuel: u64,
    /// Recursion limit.
    pub recursion_limit: usize,
    /// Output cap in bytes.
    pub max_output: usize,
}

/// A writer that refuses to grow past a cap.
struct CappedWriter {
    buf: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.cap {
            self.overflowed = true;
            return Err(std::io::Error::other("chat template output cap"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ChatTemplate {
    /// A template from its Jinja source; `bos_token`/`eos_token` are the
    /// texts the template sees under those names.
    pub fn new(source: impl Into<String>, bos_token: Option<String>, eos_token: Option<String>) -> ChatTemplate {
        ChatTemplate {
            source: source.into(),
            bos_token: bos_token.unwrap_or_default(),
            eos_token: eos_token.unwrap_or_default(),
            fuel: DEFAULT_FUEL,
            recursion_limit: DEFAULT_RECURSION_LIMIT,
            max_output: DEFAULT_MAX_OUTPUT,
        }
    }

    /// The template of a GGUF file (`tokenizer.chat_template`), with its
    /// BOS/EOS texts from the vocabulary.
    pub fn from_gguf(
        header: &crate::gguf::GgufHeader,
        tokenizer: &crate::tokenizer::Tokenizer,
    ) -> Result<ChatTemplate, ChatError> {
        let source = header
            .get_str("tokenizer.chat_template")
            .map_err(|e| ChatError::Template(e.to_string()))?
            .ok_or(ChatError::NoTemplate)?;
        Ok(ChatTemplate::new(source, tokenizer.bos_text(), tokenizer.eos_text()))
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends with
    /// the header of the assistant's turn.
    ///
    /// Rendering runs on a thread of its own whose stack is sized by the
    /// fuel (see [`STACK_PER_FUEL`]); a panic of that thread (a bug in
    /// minijinja) is returned as [`ChatError::EnginePanic`].
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, ChatError> {
        refuse_repetition(&self.source)?;
        let per_fuel = usize::try_from(self.fuel).unwrap_or(usize::MAX).saturating_mul(STACK_PER_FUEL);
        let stack = RENDER_STACK_BASE.saturating_add(per_fuel);
        std::thread::scope(|scope| {
            let renderer = std::thread::Builder::new()
                .name("chat-template".into())
                .stack_size(stack)
                .spawn_scoped(scope, || self.render_on_this_thread(messages, add_generation_prompt))
                .map_err(|e| {
                    ChatError::Template(format!(
                        "cannot start the rendering thread with {} MiB of stack (fuel {}): {e}",
                        stack >> 20,
                        self.fuel
                    ))
                })?;
            renderer.join().unwrap_or_else(engine_panic)
        })
    }

    /// [`render`](Self::render), on the caller's stack.
    fn render_on_this_thread(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        let nonce = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8);
        let hidden = |name: &str| format!("__asdsl_builtin_{name}_{nonce:016x}");
        let meter = Arc::new(Meter::new(self.max_output.saturating_mul(RENDER_BUDGET_FACTOR)));
        let method_meter = Arc::clone(&meter);
        env.set_unknown_method_callback(move |state, value, method, args| {
            // Python's str.format: the same width check as the format filter
            if method == "format"
                && let Some(spec) = value.as_str()
            {
                check_format_widths(spec)?;
                check_str_format_keys(spec)?;
            }
            // `sep.join(items)` makes what the join filter makes of `items|join(sep)`
            let mut inputs = Vec::with_capacity(args.len() + 1);
            if method == "join" {
                inputs.extend(args.first().cloned());
                inputs.push(value.clone());
            } else {
                inputs.push(value.clone());
                inputs.extend_from_slice(args);
            }
            method_meter.take(method, &inputs)?;
            let made = minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)?;
            method_meter.made(method, &made)?;
            Ok(made)
        });
        let metered = hide_builtin_filters!(env, hidden;
            "safe" => minijinja::filters::safe,
            "escape" => minijinja::filters::escape,
            "e" => minijinja::filters::escape,
            "lower" => minijinja::filters::lower,
            "upper" => minijinja::filters::upper,
            "title" => minijinja::filters::title,
            "capitalize" => minijinja::filters::capitalize,
            "replace" => minijinja::filters::replace,
            "dictsort" => minijinja::filters::dictsort,
            "items" => minijinja::filters::items,
            "reverse" => minijinja::filters::reverse,
            "trim" => minijinja::filters::trim,
            "join" => minijinja::filters::join,
            "split" => minijinja::filters::split,
            "lines" => minijinja::filters::lines,
            "length" => minijinja::filters::length,
            "count" => minijinja::filters::length,
            "first" => minijinja::filters::first,
            "last" => minijinja::filters::last,
            "int" => minijinja::filters::int,
            "float" => minijinja::filters::float,
            "min" => minijinja::filters::min,
            "max" => minijinja::filters::max,
            "sort" => minijinja::filters::sort,
            "list" => minijinja::filters::list,
            "string" => minijinja::filters::string,
            "batch" => minijinja::filters::batch,
            "slice" => minijinja::filters::slice,
            "sum" => minijinja::filters::sum,
            "indent" => minijinja::filters::indent,
            "select" => minijinja::filters::select,
            "reject" => minijinja::filters::reject,
            "selectattr" => minijinja::filters::selectattr,
            "rejectattr" => minijinja::filters::rejectattr,
            "map" => minijinja::filters::map,
            "groupby" => minijinja::filters::groupby,
            "unique" => minijinja::filters::unique,
            "chain" => minijinja::filters::chain,
            "zip" => minijinja::filters::zip,
            "format" => minijinja::filters::format,
            "tojson" => minijinja::filters::tojson,
            "truncate" => minijinja_contrib::filters::truncate,
            "striptags" => minijinja_contrib::filters::striptags,
        );
        for name in metered {
            let builtin = hidden(name);
            let meter = Arc::clone(&meter);
            env.add_filter(name, move |state: &State, args: Rest<Value>| -> Result<Value, minijinja::Error> {
                if GUARDED_FILTERS.contains(&name) {
                    check_filter_args(name, &args)?;
                }
                meter.take(name, &args)?;
                let made = state.apply_filter(&builtin, &args)?;
                meter.made(name, &made)?;
                Ok(made)
            });
        }
        let formatter_meter = Arc::clone(&meter);
        env.set_formatter(move |out, state, value| {
            formatter_meter.charge(formatted_size(value, formatter_meter.room().saturating_add(1)), "{{ ... }}")?;
            minijinja::escape_formatter(out, state, value)
        });
        env.add_filter("pprint", |_: Value| -> Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "the pprint filter is not available in chat templates (its time grows with the cube of a value's depth)",
            ))
        });
        env.set_fuel(Some(self.fuel));
        env.set_recursion_limit(self.recursion_limit);
        env.add_function("raise_exception", |message: String| -> Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, format!("raise_exception: {message}")))
        });
        // Hugging Face templates call strftime_now for dates; a fixed date
        // keeps rendering deterministic.
        env.add_function("strftime_now", |_format: String| -> String { "01 Jan 2026".to_owned() });
        let template = env.template_from_str(&self.source).map_err(|e| ChatError::Template(format_error(&e)))?;
        let context = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        };
        let mut writer = CappedWriter { buf: Vec::new(), cap: self.max_output, overflowed: false };
        let result = template.render_captured_to(context, &mut writer).map(drop);
        if writer.overflowed {
            return Err(ChatError::OutputTooLarge(self.max_output));
        }
        result.map_err(|e| ChatError::Template(format_error(&e)))?;
        String::from_utf8(writer.buf).map_err(|_| ChatError::Template("output is not UTF-8".into()))
    }

    /// Renders the usual prompt: an optional system message and one user
    /// message, ending with the assistant header.
    pub fn render_prompt(&self, system: Option<&str>, user: &str) -> Result<String, ChatError> {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = system {
            messages.push(ChatMessage::new("system", system));
        }
        messages.push(ChatMessage::new("user", user));
        self.render(&messages, true)
    }
}

/// Refuses a template that uses the `*` operator (see the module docs):
/// tokens, so that a `*` inside a string literal or outside the template's
/// tags is text, not an operator. A template that does not tokenize is left
/// to the parser, which reports where.
fn refuse_repetition(source: &str) -> Result<(), ChatError> {
    use minijinja::machinery::{Token, WhitespaceConfig, tokenize};
    for token in tokenize(source, false, Default::default(), WhitespaceConfig::default()) {
        match token {
            Ok((Token::Mul, span)) => {
                return Err(ChatError::Template(format!(
                    "line {}: the `*` operator is not allowed in chat templates (a sequence repeated by a \
                     number runs without a bound)",
                    span.start_line
                )));
            }
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// The render budget (see the module docs): the bytes that `{{ ... }}`
/// formats and that filters and string methods take and make.
struct Meter {
    used: AtomicUsize,
    budget: usize,
}

impl Meter {
    fn new(budget: usize) -> Meter {
        Meter { used: AtomicUsize::new(0), budget }
    }

    /// What is left of the budget.
    fn room(&self) -> usize {
        self.budget.saturating_sub(self.used.load(Ordering::Relaxed))
    }

    /// Counts `bytes` for `what`; past the budget, the error that ends the render.
    fn charge(&self, bytes: usize, what: &str) -> Result<(), minijinja::Error> {
        let bytes = bytes.min(self.budget.saturating_add(1));
        if self.used.fetch_add(bytes, Ordering::Relaxed).saturating_add(bytes) > self.budget {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "{what}: past the render budget of {} bytes (what `{{{{ ... }}}}` formats, captured macro and \
                     block text included, and the values that filters and string methods take and make)",
                    self.budget
                ),
            ));
        }
        Ok(())
    }

    /// Before filter or method `name` runs on `args` (its value first):
    /// counts them, and refuses it if a bound of its result is larger than
    /// what would be left.
    fn take(&self, name: &str, args: &[Value]) -> Result<(), minijinja::Error> {
        self.charge(args.iter().map(value_bytes).fold(0, usize::saturating_add), name)?;
        if let Some(bound) = result_bound(name, args, self.room().saturating_add(1))
            && bound > self.room()
        {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "{name}: its result could be {bound} bytes, more than the {} left of the render budget",
                    self.room()
                ),
            ));
        }
        Ok(())
    }

    /// Counts the value that `name` made.
    fn made(&self, name: &str, value: &Value) -> Result<(), minijinja::Error> {
        self.charge(value_bytes(value), name)
    }
}

/// What `value` counts against the render budget: a string's or bytes'
/// length, [`ITEM_BYTES`] per item of a sequence or map, [`ITEM_BYTES`]
/// for anything else.
fn value_bytes(value: &Value) -> usize {
    if let Some(text) = value.as_str() {
        return text.len();
    }
    if let Some(bytes) = value.as_bytes() {
        return bytes.len();
    }
    match value.kind() {
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => value.len().unwrap_or(1).saturating_mul(ITEM_BYTES),
        _ => ITEM_BYTES,
    }
}

/// For the filters and methods whose result can be many times their input,
/// an upper bound of its bytes (`args`: the value first, then the
/// arguments; the items of a join counted up to `limit`); `None` for the others.
fn result_bound(name: &str, args: &[Value], limit: usize) -> Option<usize> {
    let text = |i: usize| args.get(i).and_then(Value::as_str).map_or(0, str::len);
    match name {
        "replace" => {
            let (len, old, new) = (text(0), text(1), text(2));
            // an empty pattern matches between every two bytes and at both ends
            let places = len.checked_div(old).unwrap_or(len.saturating_add(1));
            Some(len.saturating_add(places.saturating_mul(new)))
        }
        "join" => {
            let items = args.first()?.try_iter().ok()?;
            let (mut bytes, mut count) = (0usize, 0usize);
            for item in items {
                count += 1;
                let size = item.as_str().map_or_else(|| formatted_size(&item, limit.saturating_sub(bytes)), str::len);
                bytes = bytes.saturating_add(size);
                if bytes > limit {
                    break;
                }
            }
            Some(bytes.saturating_add(count.saturating_mul(text(1))))
        }
        // a string's characters as a sequence
        "list" | "sort" | "unique" => args.first()?.as_str().map(|t| t.len().saturating_mul(ITEM_BYTES)),
        "indent" => {
            let lines = args.first().and_then(Value::as_str).map_or(1, |t| t.matches('\n').count() + 1);
            Some(text(0).saturating_add(lines.saturating_mul(MAX_FILTER_SIZE + 1)))
        }
        "format" => {
            let fields = args.first().and_then(Value::as_str).map_or(0, |t| t.matches(['%', '{']).count());
            let values = args.iter().skip(1).map(|v| formatted_size(v, limit)).fold(0, usize::saturating_add);
            Some(text(0).saturating_add(fields.saturating_mul(MAX_FILTER_SIZE)).saturating_add(values))
        }
        _ => None,
    }
}

/// The size of `value` as `{{ value }}` prints it, counted up to just past
/// `limit` (so that measuring a huge sequence costs no more than the limit).
fn formatted_size(value: &Value, limit: usize) -> usize {
    if let Some(text) = value.as_str() {
        return text.len();
    }
    struct Counter {
        bytes: usize,
        limit: usize,
    }
    impl std::fmt::Write for Counter {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.bytes = self.bytes.saturating_add(s.len());
            if self.bytes > self.limit { Err(std::fmt::Error) } else { Ok(()) }
        }
    }
    let mut counter = Counter { bytes: 0, limit };
    // an error only says that the limit was passed
    let _ = std::fmt::write(&mut counter, format_args!("{value}"));
    counter.bytes
}

/// An error for a size argument above [`MAX_FILTER_SIZE`].
fn too_large(what: &str, size: impl std::fmt::Display) -> minijinja::Error {
    minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("{what}: size {size} is above the limit of {MAX_FILTER_SIZE}"),
    )
}

/// Checks the arguments of a guarded filter: every number after the value
/// (keyword arguments included) is at most [`MAX_FILTER_SIZE`] in size; for
/// `format`, the widths in the format string too.
fn check_filter_args(name: &str, args: &[Value]) -> Result<(), minijinja::Error> {
    fn check(name: &str, value: &Value) -> Result<(), minijinja::Error> {
        match value.kind() {
            ValueKind::Number => match f64::try_from(value.clone()) {
                Ok(x) if x.abs() <= MAX_FILTER_SIZE as f64 => Ok(()),
                _ => Err(too_large(name, value)),
            },
            // keyword arguments arrive as a map
            ValueKind::Map => {
                for key in value.try_iter()? {
                    check(name, &value.get_item(&key)?)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    if name == "format"
        && let Some(spec) = args.first().and_then(Value::as_str)
    {
        check_format_widths(spec)?;
        // minijinja 2.24's printf parser steps through conversions (and
        // `%(key)s` keys) byte by byte and panics on a multi-byte character
        // there (found by fuzzing: fuzz/regressions/chat_template/), so
        // printf formats are ASCII from their first `%` on.
        if spec.find('%').is_some_and(|i| !spec[i..].is_ascii()) {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "format: a printf format with a non-ASCII character after its first %",
            ));
        }
    }
    args.iter().skip(1).try_for_each(|arg| check(name, arg))
}

/// Checks that no field of a printf (`%08.3f`) or Python (`{:>10}`) format
/// string can ask for a width or precision above [`MAX_FILTER_SIZE`]:
/// conservatively, every run of digits after the first `%` or `{` counts.
fn check_format_widths(spec: &str) -> Result<(), minijinja::Error> {
    let Some(first) = spec.find(['%', '{']) else { return Ok(()) };
    for digits in spec[first..].split(|c: char| !c.is_ascii_digit()).filter(|d| !d.is_empty()) {
        if digits.len() > 9 || digits.parse::<usize>().is_ok_and(|n| n > MAX_FILTER_SIZE) {
            return Err(too_large("format", digits));
        }
    }
    Ok(())
}

/// Refuses a Python format string (`str.format`) with a non-ASCII
/// character in a field's `[key]` (`{0[key]}`): minijinja 2.24's parser
/// reads such a key byte by byte to its `]`, as it does a printf
/// `%(key)s`, and panics on a multi-byte character there (found by
/// fuzzing: fuzz/regressions/chat_template/). Text outside the fields may
/// be anything.
fn check_str_format_keys(spec: &str) -> Result<(), minijinja::Error> {
    let bytes = spec.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => i += 2,
            b'{' => {
                // A field: it ends at the first `}` outside its `[key]`s,
                // which run to their `]` (or the end), a `}` included.
                i += 1;
                while i < bytes.len() && bytes[i] != b'}' {
                    if bytes[i] == b'[' {
                        // `i` is at an ASCII `[`, so `i + 1` is a character boundary.
                        let end = spec[i + 1..].find(']').map_or(spec.len(), |e| i + 1 + e);
                        if !spec[i + 1..end].is_ascii() {
                            return Err(minijinja::Error::new(
                                ErrorKind::InvalidOperation,
                                "format: a str.format key ({0[...]}) with a non-ASCII character",
                            ));
                        }
                        i = end;
                    }
                    i += 1;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn format_error(error: &minijinja::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// The result of a render whose thread panicked: an error that says so,
/// rather than a crash of the program (the panic hook has printed the
/// message and place too, for a bug report).
fn engine_panic(payload: Box<dyn std::any::Any + Send>) -> Result<String, ChatError> {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    Err(ChatError::EnginePanic(message.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str) -> Result<String, ChatError> {
        ChatTemplate::new(source, None, None).render(&[ChatMessage::new("user", "a\nb")], true)
    }

    #[test]
    fn printf_formats_with_multibyte_characters_are_errors_not_panics() {
        for source in ["{{ '%(ké)s' | format }}", "{{ 'x%é' | format(1) }}", "{{ 'a' | __asdsl_builtin_format }}"] {
            let template = ChatTemplate::new(source, None, None);
            let err = template.render(&[], false).unwrap_err().to_string();
            assert!(err.contains("non-ASCII") || err.contains("unknown filter"), "{source}: {err}");
        }
    }

    #[test]
    fn str_format_keys_with_multibyte_characters_are_errors_not_panics() {
        for source in ["{{ '{0[é]}'.format([1]) }}", "{{ '{0[a}é]}'.format([1]) }}", "{{ 'x{0[a\u{FFFD}'.format('') }}"]
        {
            let template = ChatTemplate::new(source, None, None);
            let err = template.render(&[], false).unwrap_err().to_string();
            assert!(err.contains("non-ASCII"), "{source}: {err}");
        }
        // Non-ASCII text outside the keys is fine.
        let template = ChatTemplate::new("{{ '{}: é [ü]'.format('a') }}", None, None);
        assert_eq!(template.render(&[], false).unwrap(), "a: é [ü]");
    }

    #[test]
    fn a_panic_of_the_template_engine_is_an_error() {
        let payload = std::panic::catch_unwind(|| panic!("index 3 is not a char boundary")).unwrap_err();
        let err = engine_panic(payload).unwrap_err();
        assert!(matches!(&err, ChatError::EnginePanic(m) if m == "index 3 is not a char boundary"), "{err:?}");
        assert_eq!(
            err.to_string(),
            "chat template: the template engine (minijinja) failed on this template: index 3 is not a char boundary"
        );
        let payload = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert!(engine_panic(payload).unwrap_err().to_string().ends_with(": no message"));
    }

    #[test]
    fn values_nested_as_deep_as_the_fuel_allows_do_not_overflow_the_stack() {
        // 70 levels per loop iteration (the parser takes at most about
        // that), about one level per instruction: the deepest value
        // the default fuel can build, then printed and serialized, which recurse once per level (a segmentation fault
        // on an 8 MiB stack before rendering got a stack sized by the fuel).
        let (open, close) = ("[".repeat(70), "]".repeat(70));
        let iterations = DEFAULT_FUEL as usize / 80;
        for print in ["{{ ns.x|length }}", "{{ ns.x }}", "{{ ns.x|tojson|length }}"] {
            let source = format!(
                "{{% set ns = namespace(x=1) %}}{{% for i in range({iterations}) %}}\
                 {{% set ns.x = {open}ns.x{close} %}}{{% endfor %}}{print}"
            );
            let text = render(&source).unwrap_or_else(|e| panic!("{print}: {e}"));
            assert!(!text.is_empty(), "{print}");
            if print == "{{ ns.x }}" {
                assert_eq!(text.len(), 2 * 70 * iterations + 1);
            }
        }
        // Past the fuel, the value is dropped when the render fails.
        let source = format!(
            "{{% set ns = namespace(x=1) %}}{{% for i in range({}) %}}{{% set ns.x = {open}ns.x{close} %}}{{% endfor %}}",
            2 * iterations
        );
        assert!(render(&source).unwrap_err().to_string().contains("fuel"));
        // pprint takes time cubic in the depth: it is not offered
        let err = render("{% set ns = namespace(x=1) %}{{ ns.x|pprint }}").unwrap_err().to_string();
        assert!(err.contains("pprint"), "{err}");
    }

    #[test]
    fn captured_text_counts_against_the_format_budget() {
        // Each call formats three recursive calls, two of them as lists of
        // characters: the text grows elevenfold per level, in little fuel
        // (fuzzing found a similar template that ran for minutes).
        let source = "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1)|list }}{{ f(n - 1)|list }}{{ f(n - 1) }}\
                      {% else %}ab{% endif %}{% endmacro %}{% set x = f(8) %}done";
        let started = std::time::Instant::now();
        let err = render(source).unwrap_err().to_string();
        assert!(err.contains("render budget"), "{err}");
        assert!(started.elapsed().as_secs() < 10, "took {:?}", started.elapsed());
        // The same macro, shallow, renders.
        assert_eq!(
            render(&source.replace("f(8)", "f(1)").replace("done", "{{ x }}")).unwrap(),
            r#"["a", "b"]["a", "b"]ab"#
        );
    }

    #[test]
    fn what_filters_take_and_make_counts_against_the_budget() {
        // The input fuzzing found (libFuzzer's 10 s timeout; 3.3 s in a
        // release build): a macro that turns its recursive calls' text into
        // sorted lists of characters and back, each level many times larger.
        let found = include_bytes!("../../fuzz/regressions/chat_template/timeout-sorted-characters-of-macro-text");
        let source = String::from_utf8_lossy(found.split(|&b| b == 0).next().unwrap_or_default()).into_owned();
        // A string through `list` and `e` five times over grows 5^k-fold in
        // one expression, with no `{{ }}` between the steps.
        let chain = format!("{{% set s = '{}' %}}{{{{ s{} }}}}", "abcdefgh".repeat(128), "|list|e".repeat(12));
        // One `replace` can multiply a string by another.
        let replace = format!("{{% set s = '{}' %}}{{{{ s|replace('', s)|replace('', s)|length }}}}", "x".repeat(4096));
        // A join with a long separator, and the method form of both.
        let join = format!("{{% set s = '{}' %}}{{{{ s|list|join(s)|list|join(s)|length }}}}", "y".repeat(2048));
        let methods = format!("{{% set s = '{}' %}}{{{{ s.replace('', s).replace('', s)|length }}}}", "z".repeat(4096));
        // A loop of filters over the same long string: each pass counts.
        let looped = format!(
            "{{% set s = '{}' %}}{{% for i in range(100000) %}}{{% set _ = s|upper %}}{{% endfor %}}",
            "w".repeat(65536)
        );
        for (what, source) in [
            ("found", &source),
            ("chain", &chain),
            ("replace", &replace),
            ("join", &join),
            ("methods", &methods),
            ("loop", &looped),
        ] {
            let started = std::time::Instant::now();
            let err = render(source).unwrap_err().to_string();
            assert!(err.contains("render budget"), "{what}: {err}");
            assert!(started.elapsed().as_secs() < 2, "{what} took {:?}", started.elapsed());
        }
        // What a real template does with a message passes: trimmed, split,
        // joined, escaped and serialized.
        let text =
            render("{% for m in messages %}{{ m['content']|trim|split('\\n')|join(' ')|e }}{{ m|tojson }}{% endfor %}")
                .unwrap();
        assert_eq!(text, r#"a b{"role":"user","content":"a\nb"}"#);
    }

    #[test]
    fn repetition_is_refused_before_rendering() {
        // The input fuzzing found (it ran into libFuzzer's 10 s timeout), and smaller ones.
        for source in [
            "{{ [3,1-2]|sort*268906890757*265355~75e8 }}",
            "{{ [1, 2] * 100000000000 ~ '' }}",
            "{% set n = 3 %}{{ 'ab' * n }}",
            "{{ 2 * 3 }}",
        ] {
            let err = render(source).unwrap_err().to_string();
            assert!(err.contains("`*` operator is not allowed"), "{source}: {err}");
        }
        // A `*` in a string literal, in text or in a power is not the operator.
        assert_eq!(render("{{ '**bold**' }} * {{ 2 ** 3 }}").unwrap(), "**bold** * 8");
        // A template that does not parse still says where.
        assert!(render("{{ 1 + }}").unwrap_err().to_string().contains("chat template"));
    }

    #[test]
    fn guarded_filters_work_within_limits() {
        assert_eq!(render("{{ messages[0].content|indent(2) }}").unwrap(), "a\n  b");
        assert_eq!(render("{{ messages[0].content|indent(width=3, first=true) }}").unwrap(), "   a\n   b");
        assert_eq!(render("{{ {'a': 1}|tojson(indent=1) }}").unwrap(), "{\n \"a\": 1\n}");
        assert_eq!(render("{{ [1, 2, 3]|batch(2)|list }}").unwrap(), "[[1, 2], [3]]");
        assert_eq!(render("{{ [1, 2, 3]|slice(2)|list }}").unwrap(), "[[1, 2], [3]]");
        assert_eq!(render("{{ '%05d|%-3s|'|format(42, 'x') }}").unwrap(), "00042|x  |");
        assert_eq!(render("{{ '{:>4}'.format('x') }}").unwrap(), "   x");
    }

    #[test]
    fn size_arguments_above_the_limit_are_errors() {
        for source in [
            "{{ 'x'|indent(1000000000000) }}",
            "{{ 'x'|indent(width=99999999) }}",
            "{{ {'a': 1}|tojson(indent=4097) }}",
            "{{ [1]|batch(18446744073709551615) }}",
            "{{ [1]|slice(1e18) }}",
            "{{ '%099999999999d'|format(1) }}",
            "{{ '%.99999s'|format('x') }}",
            "{{ '{:>99999999}'.format('x') }}",
        ] {
            match render(source) {
                Err(ChatError::Template(message)) => assert!(message.contains("limit"), "{source}: {message}"),
                other => panic!("{source}: {other:?}"),
            }
        }
    }
}
