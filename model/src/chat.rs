//! Chat templates: the Jinja template of a model (GGUF
//! `tokenizer.chat_template` or tokenizer_config.json `chat_template`)
//! rendered with minijinja. Templates come from model files, so rendering is
//! bounded: a fuel limit on instructions, a recursion limit, and a cap on the
//! output size; a template that exceeds them ends with an error.

use std::io::Write;

use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;
use thiserror::Error;

/// Instructions a template may execute (minijinja fuel).
pub const DEFAULT_FUEL: u64 = 5_000_000;
/// Nesting depth of macros, includes and recursive loops.
pub const DEFAULT_RECURSION_LIMIT: usize = 64;
/// Largest rendered prompt, in bytes.
pub const DEFAULT_MAX_OUTPUT: usize = 4 << 20;

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
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, ChatError> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
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
