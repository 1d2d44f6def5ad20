//! Packing: weights rearranged, losslessly and without extra bytes per
//! weight, into the layout a kernel variant reads.
//!
//! Four layouts:
//!
//! - [`Layout::Blocks`]: the format's own blocks, row after row, exactly as
//!   in a GGUF tensor. The scalar variants read it.
//! - [`Layout::RowSlots`]: SIMD dense variants. Rows are grouped into tiles
//!   of `R`; a tile is a stream of *slots*, slot `g` being the 32 codes of
//!   row `g % R`, sub-block `g / R`. Four slots make a *step* (one 512-bit
//!   vector of codes, or two 256-bit ones): their codes are stored as bit
//!   planes so that unpacking is a shift and a mask (see [`slots`]). Header
//!   bytes (scales, mins) come before the steps that use them, in *chunks*
//!   that cover whole format units of all `R` rows.
//! - [`Layout::Interleaved`]: the 16-row int8 variants of Q4_0, Q4_1, Q4_K,
//!   Q6_K and q4g32 (tile rows [`INTERLEAVED_ROWS`]). Codes interleaved four at
//!   a time across 16 rows, so that the lanes of a 512-bit accumulator (or two
//!   256-bit ones) are rows
//!   (see [`interleaved`]).
//! - [`Layout::ColumnMajor`]: column-sparse variants. For each unit of
//!   columns: the headers of every row, then each column's codes for every
//!   row, as bit planes (see [`columns`]), so that a zero activation skips
//!   its column's bytes entirely.
//!
//! Every layout pads rows and columns with zero blocks (weight 0), which the
//! kernels compute and never write out.

pub(crate) mod columns;
pub(crate) mod interleaved;
pub(crate) mod slots;

pub use interleaved::INTERLEAVED_ROWS;

use crate::error::KernelError;
use crate::formats::{BlockFormat, Format};
use crate::kernel::KernelFormat;
use crate::variant::{Isa, Sparsity, Variant};

/// Rows per tile of the column-major layout (the column-sparse row block).
pub const COLUMN_MAJOR_ROWS: usize = 64;

/// How a packed matrix is laid out.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// The format's blocks, row after row.
    Blocks,
    /// Interleaved tiles of `tile_rows` rows, codes in bit planes.
    RowSlots {
        /// Rows per tile.
        tile_rows: usize,
    },
    /// Column-major bit planes.
    ColumnMajor,
    /// Tiles of [`INTERLEAVED_ROWS`] rows, four codes of each row per 32-bit lane.
    Interleaved,
}

impl Layout {
    /// The layout a variant reads: dense SIMD variants of
    /// [`INTERLEAVED_ROWS`] tile rows read the interleaved layout, the other
    /// dense SIMD ones row slots.
    pub fn for_variant(variant: &Variant) -> Layout {
        match (variant.sparsity, variant.isa) {
            (Sparsity::ColumnSparse, _) => Layout::ColumnMajor,
            (Sparsity::Dense, Isa::Scalar) => Layout::Blocks,
            (Sparsity::Dense, _) if variant.tile_rows == INTERLEAVED_ROWS => Layout::Interleaved,
            (Sparsity::Dense, _) => Layout::RowSlots { tile_rows: variant.tile_rows },
        }
    }
}

/// An owned, aligned byte buffer for packed weights, with 64 bytes of zeroed
/// slack at the end. Buffers of 2 MiB and more are aligned to 2 MiB and, on
/// Linux, backed by transparent huge pages where the system allows (fewer TLB
/// misses while streaming weights from DRAM); smaller ones to 64 bytes, so
/// that vector loads split no more cache lines than the layout requires.
pub struct AlignedBytes {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    layout: std::alloc::Layout,
}

// SAFETY: `AlignedBytes` owns its allocation exclusively, like a `Vec<u8>`.
unsafe impl Send for AlignedBytes {}
// SAFETY: shared access only reads.
unsafe impl Sync for AlignedBytes {}

const HUGE_PAGE: usize = 2 << 20;

impl AlignedBytes {
    /// Copies `bytes` into a new aligned buffer.
    pub fn from_slice(bytes: &[u8]) -> Self {
        let align = if bytes.len() >= HUGE_PAGE { HUGE_PAGE } else { 64 };
        let size = (bytes.len() + 64).div_ceil(align) * align;
        let layout = std::alloc::Layout::from_size_align(size, align).expect("a valid layout");
        // Not `alloc_zeroed`: for this alignment it writes the zeros itself,
        // which would fault every page in as a small page before the advice.
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { std::alloc::alloc(layout) };
        let Some(ptr) = std::ptr::NonNull::new(raw) else { std::alloc::handle_alloc_error(layout) };
        #[cfg(all(target_os = "linux", not(miri)))]
        if align == HUGE_PAGE {
            // SAFETY: the range is our own allocation; the advice only
            // changes how pages are backed, not their contents. Failure is
            // harmless (huge pages are an optimization).
            unsafe { libc::madvise(raw.cast(), size, libc::MADV_HUGEPAGE) };
        }
        // SAFETY: the allocation holds `size >= bytes.len()` bytes and does
        // not overlap `bytes`; the rest (the slack) is zeroed, so every byte
        // is initialized.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), raw, bytes.len());
            std::ptr::write_bytes(raw.add(bytes.len()), 0, size - bytes.len());
        }
        AlignedBytes { ptr, len: bytes.len(), layout }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the allocation holds `len` initialized bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Default for AlignedBytes {
    fn default() -> Self {
        AlignedBytes::from_slice(&[])
    }
}

impl Clone for AlignedBytes {
    fn clone(&self) -> Self {
        AlignedBytes::from_slice(self.as_slice())
    }
}

impl Drop for AlignedBytes {
    fn drop(&mut self) {
        // SAFETY: allocated in `from_slice` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

impl std::fmt::Debug for AlignedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBytes({} bytes)", self.len)
    }
}

/// A weight matrix packed for one layout.
#[derive(Clone, Debug)]
pub struct PackedMatrix {
    format: Format,
    layout: Layout,
    rows: usize,
    cols: usize,
    padded_cols: usize,
    tile_rows: usize,
    tiles: usize,
    tile_bytes: usize,
    data: AlignedBytes,
}

impl PackedMatrix {
    /// Packs `rows` rows of `cols` weights given as `format` blocks, row
    /// after row (a GGUF tensor's bytes, or [`quantize_matrix`]'s output),
    /// into `layout`. Rows of a native format whose last group is partial
    /// are given padded with zeros to whole groups, as [`quantize_matrix`]
    /// writes them; GGUF formats need whole blocks.
    pub fn from_blocks(
        format: Format,
        rows: usize,
        cols: usize,
        blocks: &[u8],
        layout: Layout,
    ) -> Result<PackedMatrix, KernelError> {
        let block_len = format.info().block_len;
        if format.is_gguf() || cols.is_multiple_of(block_len) {
            return crate::with_format!(format, F => pack::<F>(rows, cols, blocks, layout));
        }
        let padded = cols.div_ceil(block_len) * block_len;
        let mut m = crate::with_format!(format, F => pack::<F>(rows, padded, blocks, layout))?;
        m.cols = cols;
        Ok(m)
    }

    /// Quantizes row-major f32 weights (`rows * cols`) into `format` and
    /// packs them. Columns that do not fill the last block are padded with
    /// zeros (native formats only: GGUF formats need whole blocks).
    pub fn quantize(
        format: Format,
        rows: usize,
        cols: usize,
        weights: &[f32],
        layout: Layout,
    ) -> Result<PackedMatrix, KernelError> {
        let blocks = quantize_matrix(format, rows, cols, weights)?;
        PackedMatrix::from_blocks(format, rows, cols, &blocks, layout)
    }

    /// The weight format.
    pub fn format(&self) -> Format {
        self.format
    }
    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }
    /// Output rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Input columns (the length of an input vector).
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Columns including zero padding to whole units.
    pub fn padded_cols(&self) -> usize {
        self.padded_cols
    }
    /// Rows per tile (the unit of work a kernel call is given).
    pub fn tile_rows(&self) -> usize {
        self.tile_rows
    }
    /// Number of tiles.
    pub fn tiles(&self) -> usize {
        self.tiles
    }
    /// Bytes per tile (row-slot, interleaved and block layouts).
    pub fn tile_bytes(&self) -> usize {
        self.tile_bytes
    }
    /// The packed bytes.
    pub fn data(&self) -> &[u8] {
        self.data.as_slice()
    }
    /// Bytes of weights a full product reads (the packed size).
    pub fn weight_bytes(&self) -> usize {
        self.data.len
    }

    /// This matrix stacked `times` times on top of itself (rows `r` and
    /// `r + k * rows` equal), without packing again: the tuner builds large
    /// random matrices this way. Only for layouts whose tiles are packed
    /// independently of each other (blocks, and row slots when the rows fill
    /// whole tiles); `None` otherwise.
    pub fn stacked(&self, times: usize) -> Option<PackedMatrix> {
        let whole_tiles = match self.layout {
            Layout::Blocks => true,
            Layout::RowSlots { tile_rows } => self.rows.is_multiple_of(tile_rows),
            Layout::Interleaved => self.rows.is_multiple_of(INTERLEAVED_ROWS),
            Layout::ColumnMajor => false,
        };
        if !whole_tiles || times == 0 || self.data.len != self.tiles * self.tile_bytes {
            return None;
        }
        let data = self.data.as_slice().repeat(times);
        Some(PackedMatrix {
            rows: self.rows * times,
            tiles: self.tiles * times,
            data: AlignedBytes::from_slice(&data),
            ..self.clone_header()
        })
    }

    /// Every field but the data (which is left empty).
    fn clone_header(&self) -> PackedMatrix {
        PackedMatrix {
            format: self.format,
            layout: self.layout,
            rows: self.rows,
            cols: self.cols,
            padded_cols: self.padded_cols,
            tile_rows: self.tile_rows,
            tiles: self.tiles,
            tile_bytes: self.tile_bytes,
            data: AlignedBytes::default(),
        }
    }
}

/// Quantizes row-major f32 weights into blocks of `format`, padding each row
/// with zeros to whole blocks (native formats).
pub fn quantize_matrix(format: Format, rows: usize, cols: usize, weights: &[f32]) -> Result<Vec<u8>, KernelError> {
    if weights.len() != rows * cols {
        return Err(KernelError::Shape(format!("{} weights for a {rows}x{cols} matrix", weights.len())));
    }
    let info = format.info();
    if format.is_gguf() && !cols.is_multiple_of(info.block_len) {
        return Err(KernelError::Shape(format!(
            "{format} needs rows of whole {}-weight blocks, got {cols} columns",
            info.block_len
        )));
    }
    let padded = cols.div_ceil(info.block_len) * info.block_len;
    let row_bytes = padded / info.block_len * info.block_bytes;
    let mut out = vec![0u8; rows * row_bytes];
    let mut row = vec![0.0f32; padded];
    for r in 0..rows {
        row[..cols].copy_from_slice(&weights[r * cols..(r + 1) * cols]);
        quantize_row(format, &row, &mut out[r * row_bytes..(r + 1) * row_bytes])?;
    }
    Ok(out)
}

fn quantize_row(format: Format, row: &[f32], out: &mut [u8]) -> Result<(), KernelError> {
    crate::with_format!(format, F => {
        for (w, b) in row.chunks_exact(F::BLOCK_LEN).zip(out.chunks_exact_mut(F::BLOCK_BYTES)) {
            <F as crate::formats::Quantize>::quantize(w, b);
        }
        Ok(())
    })
}

/// One row split into per-unit header bytes and per-weight codes, padded with
/// zero units to `units` units.
pub(crate) struct SplitRow {
    pub headers: Vec<u8>,
    pub codes: Vec<u8>,
}

pub(crate) fn split_row<F: KernelFormat>(row: Option<&[u8]>, units: usize) -> SplitRow {
    let mut headers = vec![0u8; units * F::UNIT_HEADER];
    let mut codes = vec![0u8; units * F::UNIT];
    if let Some(row) = row {
        for (b, block) in row.chunks_exact(F::BLOCK_BYTES).enumerate() {
            F::split(
                block,
                &mut headers[b * F::HEADER_BYTES..(b + 1) * F::HEADER_BYTES],
                &mut codes[b * F::BLOCK_LEN..(b + 1) * F::BLOCK_LEN],
            );
        }
    }
    SplitRow { headers, codes }
}

fn pack<F: KernelFormat>(rows: usize, cols: usize, blocks: &[u8], layout: Layout) -> Result<PackedMatrix, KernelError> {
    if rows == 0 || cols == 0 {
        return Err(KernelError::Shape(format!("empty matrix {rows}x{cols}")));
    }
    let row_bytes = F::FORMAT.row_bytes(cols)?;
    let expected = rows.checked_mul(row_bytes).ok_or_else(|| KernelError::Shape("matrix too large".into()))?;
    if blocks.len() != expected {
        return Err(KernelError::Shape(format!(
            "{}: a {rows}x{cols} matrix is {expected} bytes, got {}",
            F::FORMAT,
            blocks.len()
        )));
    }
    let units = cols.div_ceil(F::UNIT);
    let padded_cols = units * F::UNIT;
    let base = PackedMatrix {
        format: F::FORMAT,
        layout,
        rows,
        cols,
        padded_cols,
        tile_rows: 1,
        tiles: rows,
        tile_bytes: row_bytes,
        data: AlignedBytes::default(),
    };
    let row = |r: usize| (r < rows).then(|| &blocks[r * row_bytes..(r + 1) * row_bytes]);
    match layout {
        Layout::Blocks => Ok(PackedMatrix { padded_cols: cols, data: AlignedBytes::from_slice(blocks), ..base }),
        Layout::RowSlots { tile_rows } => {
            if !matches!(tile_rows, 1 | 2 | 4 | 8) {
                return Err(KernelError::Layout(format!("tile rows must be 1, 2, 4 or 8, not {tile_rows}")));
            }
            let tiles = rows.div_ceil(tile_rows);
            let mut data = Vec::new();
            let mut tile_bytes = 0;
            for t in 0..tiles {
                let split: Vec<SplitRow> =
                    (0..tile_rows).map(|i| split_row::<F>(row(t * tile_rows + i), units)).collect();
                let before = data.len();
                slots::pack_tile::<F>(&split, tile_rows, units, &mut data);
                tile_bytes = data.len() - before;
            }
            Ok(PackedMatrix { tile_rows, tiles, tile_bytes, data: AlignedBytes::from_slice(&data), ..base })
        }
        Layout::Interleaved => {
            if !interleaved::supports::<F>() {
                return Err(KernelError::Layout(format!(
                    "the interleaved layout holds Q4_0, Q4_1, Q4_K, Q6_K and q4g32 blocks, not {}",
                    F::FORMAT
                )));
            }
            let tiles = rows.div_ceil(INTERLEAVED_ROWS);
            let tile_bytes = units * interleaved::unit_bytes::<F>();
            let mut data = Vec::with_capacity(tiles * tile_bytes);
            for t in 0..tiles {
                let split: Vec<SplitRow> =
                    (0..INTERLEAVED_ROWS).map(|i| split_row::<F>(row(t * INTERLEAVED_ROWS + i), units)).collect();
                interleaved::pack_tile::<F>(&split, units, &mut data);
            }
            debug_assert_eq!(data.len(), tiles * tile_bytes);
            Ok(PackedMatrix {
                tile_rows: INTERLEAVED_ROWS,
                tiles,
                tile_bytes,
                data: AlignedBytes::from_slice(&data),
                ..base
            })
        }
        Layout::ColumnMajor => {
            let padded_rows = rows.div_ceil(COLUMN_MAJOR_ROWS) * COLUMN_MAJOR_ROWS;
            let split: Vec<SplitRow> = (0..padded_rows).map(|r| split_row::<F>(row(r), units)).collect();
            let data = columns::pack::<F>(&split, units);
            Ok(PackedMatrix {
                tile_rows: COLUMN_MAJOR_ROWS,
                tiles: padded_rows / COLUMN_MAJOR_ROWS,
                tile_bytes: 0,
                data: AlignedBytes::from_slice(&data),
                ..base
            })
        }
    }
}

/// One bit plane of the packed codes: which bits of each code it holds.
#[derive(Copy, Clone, Debug)]
pub(crate) enum Plane {
    /// Bits 0–3, two codes per byte.
    Nibbles,
    /// Bits `shift..shift + 2`, four codes per byte.
    Crumbs { shift: u32 },
    /// Bit `shift`, eight codes per byte.
    Bits { shift: u32 },
    /// All eight bits, one code per byte.
    Bytes,
}

/// The planes that `bits`-bit codes are split into, low bits first. Both
/// packed layouts (row slots and columns) store these planes, each in its
/// own order of codes.
pub(crate) const fn planes(bits: u32) -> &'static [Plane] {
    match bits {
        2 => &[Plane::Crumbs { shift: 0 }],
        3 => &[Plane::Crumbs { shift: 0 }, Plane::Bits { shift: 2 }],
        4 => &[Plane::Nibbles],
        5 => &[Plane::Nibbles, Plane::Bits { shift: 4 }],
        6 => &[Plane::Nibbles, Plane::Crumbs { shift: 4 }],
        8 => &[Plane::Bytes],
        _ => panic!("code widths are 2 to 6 or 8 bits"),
    }
}

/// Bytes of the codes of one step of four slots (`slots` of them real) for
/// `bits`-bit codes. Nibble and byte planes shrink with the slots of a
/// partial step; crumb and bit planes are always whole.
pub(crate) const fn step_code_bytes(bits: u32, slots: usize) -> usize {
    match bits {
        2 => 32,
        3 => 48,
        4 => 16 * slots,
        5 => 16 * slots + 16,
        6 => 16 * slots + 32,
        _ => 32 * slots,
    }
}

/// Geometry of the row-slot layout for format `F` and `R` tile rows.
#[derive(Copy, Clone, Debug)]
pub(crate) struct SlotGeometry {
    /// Slots per chunk: `lcm(4, R * subs_per_unit)`.
    pub chunk_slots: usize,
    /// Units (per row) per full chunk.
    pub chunk_units: usize,
}

impl SlotGeometry {
    pub(crate) const fn of<F: KernelFormat>(tile_rows: usize) -> SlotGeometry {
        let per_unit = tile_rows * F::SUBS_PER_UNIT;
        let chunk_slots = lcm(4, per_unit);
        SlotGeometry { chunk_slots, chunk_units: chunk_slots / per_unit }
    }
}

const fn lcm(a: usize, b: usize) -> usize {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    a / x * b
}

/// Checks that `F`'s geometry suits the layouts (a compile-time sanity
/// check of the format definitions, run by the tests).
pub fn check_format_geometry(format: Format) -> Result<(), KernelError> {
    crate::with_format!(format, F => {
        let ok = F::UNIT % 32 == 0
            && F::UNIT % F::BLOCK_LEN == 0
            && (F::SCALE_LEN >= 16)
            && F::BLOCK_LEN % F::SCALE_LEN == 0
            && <F as BlockFormat>::CODE_BITS <= 8;
        if ok { Ok(()) } else { Err(KernelError::Layout(format!("{format}: unsupported block geometry"))) }
    })
}
