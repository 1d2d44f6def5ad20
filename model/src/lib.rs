//! The asdsl model runtime: configuration, loaders, the transformer forward
//! pass, sampler and generation.
//!
//! - [`config`]: [`ModelConfig`] from a Hugging Face `config.json`, validated.
//! - [`hf`]: safetensors checkpoints by mmap (single or sharded);
//!   [`load_hf`]: Hugging Face folders, quantized at load;
//!   [`load_gguf`]: GGUF files, tensors run as stored;
//!   [`quantized`]: files of `asdsl quantize`, quantized once, loaded by mmap.
//! - [`stored`]: matrices as stored (f32 or blocks), before packing.
//! - [`memory`]: refusing a load larger than the memory available.
//! - [`quant`]: which format each matrix of a float checkpoint is quantized to.
//! - [`resolve`]: which kernel variant runs each matrix, chosen once at load.
//! - [`linear`]: f32 and quantized linear layers.
//! - [`model`]: a loaded [`Model`]; [`forward`]: its forward pass over a
//!   KV cache ([`State`]); [`rope`]: rotary embeddings; `attention`: causal
//!   attention of one head on the widest f32 vectors the CPU allows.
//! - [`perplexity`]: perplexity and KL divergence as llama.cpp's llama-perplexity.
//! - [`sampler`]: greedy and stochastic sampling; [`generate`]: the loop.
//! - [`exec`]: the threads a model runs on.
//! - [`random`]: seeded random-weight models of a geometry, as GGUF files.
//! - [`geometry`]: the named model shapes (smollm2-135m, llama-1b, phi4-mini,
//!   llama-8b) and the GEMV keys of one decode step.

mod attention;
pub mod chat;
pub mod config;
pub mod error;
pub mod exec;
pub mod forward;
pub mod generate;
pub mod geometry;
pub mod gguf;
pub mod hf;
pub mod linear;
pub mod load_gguf;
pub mod load_hf;
pub mod memory;
pub mod model;
pub mod perplexity;
pub mod quant;
pub mod quantized;
pub mod random;
pub mod resolve;
pub mod rope;
pub mod sampler;
pub mod stored;
pub mod tokenizer;

pub use asdsl_kernels as kernels;
pub use config::ModelConfig;
pub use error::ModelError;
pub use exec::Exec;
pub use forward::State;
pub use model::{LoadOptions, Model};
pub use quant::QuantSpec;
pub use resolve::{Activations, Resolver};
pub use sampler::{Sampler, SamplerConfig};
