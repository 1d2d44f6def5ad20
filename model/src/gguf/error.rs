//! Errors of the GGUF reader and writer.

use thiserror::Error;

/// Everything that can be wrong with a GGUF file, or with a metadata value
/// read from one. Messages name the problem and where it is: a byte offset
/// from the start of the file, a metadata key or a tensor name.
#[derive(Debug, Error)]
pub enum GgufError {
    /// The file ends before a field it announces.
    #[error("truncated GGUF file: {what} at byte {offset} needs {needed} bytes, only {available} remain")]
    Truncated {
        /// What was being read.
        what: String,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left in the file.
        available: usize,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic bytes are {found:02x?}, expected \"GGUF\"")]
    BadMagic {
        /// The bytes found.
        found: Vec<u8>,
    },
    /// A GGUF version other than 2 or 3.
    #[error("unsupported GGUF version {0} (2 and 3 are supported)")]
    UnsupportedVersion(u32),
    /// A count (tensors, metadata entries, array elements) that cannot fit in
    /// the rest of the file.
    #[error(
        "{what} at byte {offset} is {count}, but the {available} remaining bytes hold at most {max} \
         (each needs at least {min_size} bytes)"
    )]
    CountTooLarge {
        /// Which count.
        what: String,
        /// Where it was read.
        offset: usize,
        /// The value in the file.
        count: u64,
        /// The most that could fit.
        max: u64,
        /// Bytes per item, at least.
        min_size: u64,
        /// Bytes left in the file.
        available: usize,
    },
    /// A string that is not valid UTF-8.
    #[error("{what} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which string.
        what: String,
        /// Where its bytes start.
        offset: usize,
    },
    /// A metadata value type id that GGUF does not define.
    #[error("metadata key `{key}`: unknown value type {type_id} at byte {offset}")]
    UnknownValueType {
        /// The key.
        key: String,
        /// The type id found.
        type_id: u32,
        /// Where it was read.
        offset: usize,
    },
    /// A bool stored as a byte other than 0 or 1.
    #[error("metadata key `{key}`: bool at byte {offset} has byte value {value} (must be 0 or 1)")]
    InvalidBool {
        /// The key.
        key: String,
        /// The byte found.
        value: u8,
        /// Where it was read.
        offset: usize,
    },
    /// Arrays nested deeper than the reader allows.
    #[error("metadata key `{key}`: arrays nested more than {max} deep at byte {offset}")]
    NestingTooDeep {
        /// The key.
        key: String,
        /// The limit.
        max: usize,
        /// Where the too-deep array starts.
        offset: usize,
    },
    /// The same metadata key twice.
    #[error("duplicate metadata key `{key}` at byte {offset}")]
    DuplicateKey {
        /// The key.
        key: String,
        /// Where the second one starts.
        offset: usize,
    },
    /// `general.alignment` of the wrong type or value.
    #[error("invalid general.alignment: {reason}")]
    BadAlignment {
        /// What is wrong.
        reason: String,
    },
    /// A tensor with more than four dimensions.
    #[error("tensor `{tensor}`: {n_dims} dimensions (at most {max})")]
    TooManyDims {
        /// The tensor.
        tensor: String,
        /// Dimensions in the file.
        n_dims: u32,
        /// The limit.
        max: u32,
    },
    /// The product of a tensor's dimensions, or its byte size, overflows.
    #[error("tensor `{tensor}`: dimensions {dims:?} overflow")]
    DimsOverflow {
        /// The tensor.
        tensor: String,
        /// Its dimensions.
        dims: Vec<u64>,
    },
    /// A ggml type id the reader does not know the block size of.
    #[error("tensor `{tensor}`: unknown or unsupported ggml type {type_name} (id {type_id})")]
    UnknownTensorType {
        /// The tensor.
        tensor: String,
        /// The type id.
        type_id: u32,
        /// Its name if ggml has one, else `unknown`.
        type_name: String,
    },
    /// A row length that is not a whole number of the format's blocks.
    #[error("tensor `{tensor}`: row of {cols} elements is not a multiple of the {type_name} block of {block_len}")]
    PartialBlock {
        /// The tensor.
        tensor: String,
        /// Elements per row (`ne[0]`).
        cols: u64,
        /// The type name.
        type_name: String,
        /// Elements per block.
        block_len: u64,
    },
    /// Two tensors with the same name.
    #[error("duplicate tensor name `{tensor}`")]
    DuplicateTensor {
        /// The tensor.
        tensor: String,
    },
    /// A tensor offset that is not a multiple of the alignment.
    #[error("tensor `{tensor}`: data offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        /// The tensor.
        tensor: String,
        /// Its offset in the data section.
        offset: u64,
        /// The alignment.
        alignment: u64,
    },
    /// A tensor whose data does not lie inside the file.
    #[error(
        "tensor `{tensor}`: data [{offset}, +{size}) relative to the data section at byte {data_start} \
         runs past the end of the {data_len}-byte data section"
    )]
    TensorOutOfBounds {
        /// The tensor.
        tensor: String,
        /// Its offset in the data section.
        offset: u64,
        /// Its size in bytes.
        size: u64,
        /// Where the data section starts in the file.
        data_start: usize,
        /// Bytes in the data section.
        data_len: usize,
    },
    /// Two tensors whose data overlap.
    #[error("tensors `{first}` and `{second}` overlap in the data section")]
    OverlappingTensors {
        /// The tensor with the lower offset.
        first: String,
        /// The other.
        second: String,
    },
    /// A metadata key that a caller requires is missing.
    #[error("metadata key `{key}` is missing")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata value of another type than the caller expects.
    #[error("metadata key `{key}`: expected {expected}, found {found}")]
    WrongType {
        /// The key.
        key: String,
        /// The type wanted.
        expected: String,
        /// The type in the file.
        found: String,
    },
    /// A metadata value outside the range the caller accepts.
    #[error("metadata key `{key}`: value {value} is out of range for {expected}")]
    OutOfRange {
        /// The key.
        key: String,
        /// The value, printed.
        value: String,
        /// The type or range wanted.
        expected: String,
    },
    /// The writer was given something it cannot write.
    #[error("cannot write GGUF: {0}")]
    Write(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}
