//! The asdsl model runtime: configuration, loaders, the transformer forward
//! pass, tokenizer, sampler and generation. (Built in a later issue; this
//! crate re-exports the kernels it will use.)

pub use asdsl_kernels as kernels;

pub mod geometry;
