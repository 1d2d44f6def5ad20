//! Memory bandwidth of this machine, and the GEMV speed it allows.
//!
//! Decode is memory bound: a GEMV call can be no faster than the bytes of its
//! weights divided by the memory bandwidth. This module measures the read
//! bandwidth from DRAM, from the L3 and from the L2 with the method a kernel
//! would see at its best:
//!
//! - a buffer per thread count, split into one contiguous chunk per thread,
//!   first touched (written) by the thread that later reads it, 2 MiB
//!   aligned and `madvise(MADV_HUGEPAGE)`d (Linux) so that transparent huge
//!   pages back it;
//! - every thread reads its chunk as several independent sequential
//!   *streams* (the chunk split in `streams` parts read in lock step, their
//!   starts staggered by a page so that none are a large power of two apart) with the
//!   widest loads available (AVX-512, AVX2, or portable code), dispatched at
//!   run time;
//! - the threads of a rayon pool of exactly `threads` threads start together
//!   (spin barrier) and the repetition lasts from the first start to the last
//!   finish;
//! - one untimed warm-up repetition, then `reps` timed ones; the median is the
//!   result, min and max are reported. Several stream counts can be tried
//!   (interleaved repetition by repetition, so that drifts hit all alike) and
//!   the best median is kept.
//!
//! The DRAM buffer must exceed four times the last-level cache (see
//! [`default_dram_bytes`]); cache-resident measurements read a small buffer
//! many times per repetition. Bandwidths are aggregate over all threads, in
//! GB/s of 10^9 bytes.

use std::hint::black_box;
use std::mem::MaybeUninit;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

#[cfg(target_arch = "x86_64")]
use crate::cpu::PREFETCH_DISTANCE;
use crate::cpu::{self, CpuInfo};
use crate::error::KernelError;
use crate::formats::Format;
use crate::variant::Isa;

/// 2^20 bytes.
pub const MIB: u64 = 1 << 20;
/// 2^30 bytes.
pub const GIB: u64 = 1 << 30;
/// The smallest default DRAM buffer.
pub const MIN_DRAM_BYTES: u64 = GIB;
/// Stream counts per thread that the read kernels support.
pub const STREAM_COUNTS: [usize; 5] = [1, 2, 4, 8, 16];
/// Alignment of the buffers (one huge page).
const HUGE_PAGE: usize = 2 << 20;
/// Per-thread chunks are multiples of this (a page; also 16 streams x 256 bytes).
const GRAIN: usize = 4096;

/// One bandwidth measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bandwidth {
    /// Threads reading.
    pub threads: usize,
    /// Size of the whole buffer (all threads' chunks), bytes.
    pub buffer_bytes: u64,
    /// Bytes read per timed repetition (all threads): buffer times passes.
    pub bytes_per_rep: u64,
    /// Independent streams per thread of the reported result (the best of `sweep`).
    pub streams: usize,
    /// Whether the reported result prefetched in software.
    #[serde(default)]
    pub prefetch: bool,
    /// Vector width of the read kernel: `avx512`, `avx2` or `scalar`.
    pub read_isa: String,
    /// Timed repetitions (per stream count).
    pub reps: usize,
    /// Median over the repetitions, GB/s.
    pub median_gbs: f64,
    /// Slowest repetition, GB/s.
    pub min_gbs: f64,
    /// Fastest repetition, GB/s.
    pub max_gbs: f64,
    /// Bytes of the buffer backed by transparent huge pages (Linux, from
    /// `/proc/self/smaps`), when known.
    pub huge_page_bytes: Option<u64>,
    /// Every stream count tried.
    pub sweep: Vec<StreamResult>,
}

/// The result for one stream count, with or without software prefetch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamResult {
    /// Independent streams per thread.
    pub streams: usize,
    /// Whether the read kernel prefetched in software, 4 KiB ahead in each
    /// stream (as the GEMV kernels do where `ASDSL_PREFETCH` or the CPU's
    /// default turns it on: not on AMD).
    #[serde(default)]
    pub prefetch: bool,
    /// Median, GB/s.
    pub median_gbs: f64,
    /// Slowest repetition, GB/s.
    pub min_gbs: f64,
    /// Fastest repetition, GB/s.
    pub max_gbs: f64,
}

/// Everything [`read_bandwidth`] needs: the measurement engine's knobs.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadOptions {
    /// Whole buffer (split evenly among the threads, each chunk rounded down
    /// to 4 KiB, or to 2 MiB for chunks of 16 MiB and more).
    pub buffer_bytes: u64,
    /// Timed repetitions per stream count (after one warm-up).
    pub reps: usize,
    /// Passes over the buffer per timed repetition.
    pub passes: usize,
    /// Stream counts per thread to try (each one of [`STREAM_COUNTS`]).
    pub streams: Vec<usize>,
    /// Read kernel ISA; `None` picks the best allowed ([`cpu::best_isa`]).
    pub isa: Option<Isa>,
    /// Ask for transparent huge pages (`madvise`, Linux).
    pub huge_pages: bool,
}

impl ReadOptions {
    /// `buffer_bytes` read once per repetition, 5 repetitions, 4 streams, best ISA, huge pages.
    pub fn new(buffer_bytes: u64) -> Self {
        ReadOptions { buffer_bytes, reps: 5, passes: 1, streams: vec![4], isa: None, huge_pages: true }
    }
}

/// Options of [`dram_read_bandwidth`].
#[derive(Clone, Debug, PartialEq)]
pub struct DramOptions {
    /// Buffer size; `None` is [`default_dram_bytes`]. Must exceed 4x the last-level cache.
    pub buffer_bytes: Option<u64>,
    /// Timed repetitions per stream count.
    pub reps: usize,
    /// Stream counts per thread to try; the best median is reported.
    pub streams: Vec<usize>,
    /// Read kernel ISA; `None` picks the best allowed.
    pub isa: Option<Isa>,
}

impl Default for DramOptions {
    fn default() -> Self {
        DramOptions { buffer_bytes: None, reps: 7, streams: vec![1, 2, 4, 8], isa: None }
    }
}

impl DramOptions {
    /// The engine options for this machine: checks that the buffer exceeds
    /// four times the last-level cache and fits in the available memory.
    pub fn read_options(&self, cpu: &CpuInfo) -> Result<ReadOptions, KernelError> {
        let bytes = self.buffer_bytes.unwrap_or_else(|| default_dram_bytes(cpu));
        if let Some(llc) = cpu.last_level_cache_bytes()
            && bytes <= 4 * llc
        {
            return Err(KernelError::Invalid(format!(
                "a DRAM buffer of {} MiB does not exceed 4 x the {} MiB last-level cache; use more than {} MiB",
                bytes / MIB,
                llc / MIB,
                4 * llc / MIB
            )));
        }
        if let Some(avail) = available_memory_bytes()
            && bytes > avail / 10 * 9
        {
            return Err(KernelError::Invalid(format!(
                "a DRAM buffer of {} MiB does not fit in the {} MiB of available memory",
                bytes / MIB,
                avail / MIB
            )));
        }
        Ok(ReadOptions {
            buffer_bytes: bytes,
            reps: self.reps,
            passes: 1,
            streams: self.streams.clone(),
            isa: self.isa,
            huge_pages: true,
        })
    }
}

/// Options of the cache-resident measurements ([`l2_read_bandwidth`], [`l3_read_bandwidth`]).
#[derive(Clone, Debug, PartialEq)]
pub struct CacheOptions {
    /// Timed repetitions per stream count.
    pub reps: usize,
    /// Bytes each thread reads per repetition (the buffer is read that many times over).
    pub bytes_per_thread_per_rep: u64,
    /// Stream counts per thread to try.
    pub streams: Vec<usize>,
    /// Read kernel ISA; `None` picks the best allowed.
    pub isa: Option<Isa>,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions { reps: 15, bytes_per_thread_per_rep: 256 * MIB, streams: vec![1, 4], isa: None }
    }
}

impl CacheOptions {
    /// L2-resident: half of one core's L2 per thread (1 MiB if unknown).
    pub fn l2_options(&self, cpu: &CpuInfo, threads: usize) -> ReadOptions {
        let per_thread = cpu.l2_bytes().map_or(MIB, |l2| (l2 / 2).max(GRAIN as u64));
        self.options(per_thread, threads)
    }

    /// L3-resident: `min(L3 / 2, 64 MiB)` split among the threads (16 MiB if unknown).
    pub fn l3_options(&self, cpu: &CpuInfo, threads: usize) -> ReadOptions {
        let total = cpu.l3_bytes().map_or(16 * MIB, |l3| (l3 / 2).min(64 * MIB));
        self.options((total / threads.max(1) as u64).max(GRAIN as u64), threads)
    }

    fn options(&self, per_thread: u64, threads: usize) -> ReadOptions {
        let per_thread = per_thread / GRAIN as u64 * GRAIN as u64;
        ReadOptions {
            buffer_bytes: per_thread * threads.max(1) as u64,
            reps: self.reps,
            passes: self.bytes_per_thread_per_rep.div_ceil(per_thread).max(1) as usize,
            streams: self.streams.clone(),
            isa: self.isa,
            huge_pages: true,
        }
    }
}

/// The default DRAM buffer: at least [`MIN_DRAM_BYTES`], and more than four
/// times the last-level cache (rounded up to 256 MiB).
pub fn default_dram_bytes(cpu: &CpuInfo) -> u64 {
    let step = 256 * MIB;
    match cpu.last_level_cache_bytes() {
        Some(llc) => {
            let min = 4 * llc;
            let mut size = MIN_DRAM_BYTES.max(min.div_ceil(step) * step);
            if size <= min {
                size += step;
            }
            size
        }
        None => MIN_DRAM_BYTES,
    }
}

/// Read bandwidth from DRAM with `threads` threads (see the module docs).
pub fn dram_read_bandwidth(threads: usize, opts: &DramOptions) -> Result<Bandwidth, KernelError> {
    read_bandwidth(threads, &opts.read_options(cpu::detect())?)
}

/// Read bandwidth of L2-resident buffers (half of one L2 per thread), aggregate over `threads`.
pub fn l2_read_bandwidth(threads: usize, opts: &CacheOptions) -> Result<Bandwidth, KernelError> {
    read_bandwidth(threads, &opts.l2_options(cpu::detect(), threads))
}

/// Read bandwidth of an L3-resident buffer (`min(L3/2, 64 MiB)` split among `threads`).
pub fn l3_read_bandwidth(threads: usize, opts: &CacheOptions) -> Result<Bandwidth, KernelError> {
    read_bandwidth(threads, &opts.l3_options(cpu::detect(), threads))
}

/// Progress of one measurement: timed repetitions done out of all (every stream count).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Timed repetitions finished (0 during allocation, first touch and warm-up).
    pub done: usize,
    /// Timed repetitions in all.
    pub total: usize,
}

/// The measurement engine, without a size policy (tests use small buffers).
pub fn read_bandwidth(threads: usize, opts: &ReadOptions) -> Result<Bandwidth, KernelError> {
    read_bandwidth_with(threads, opts, &mut |_| {})
}

/// [`read_bandwidth`], calling `progress` before the first and after every timed repetition.
pub fn read_bandwidth_with(
    threads: usize,
    opts: &ReadOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Bandwidth, KernelError> {
    measure_with_reader(threads, opts, progress).map(|(bandwidth, _)| bandwidth)
}

/// The measurement behind [`read_bandwidth_with`], which also returns its
/// reader (for [`DramProbe`]).
fn measure_with_reader(
    threads: usize,
    opts: &ReadOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Bandwidth, Reader), KernelError> {
    if opts.reps == 0 {
        return Err(KernelError::Invalid("repetitions must be at least 1".into()));
    }
    if opts.streams.is_empty() {
        return Err(KernelError::Invalid("no stream count to try".into()));
    }
    if let Some(s) = opts.streams.iter().find(|s| !STREAM_COUNTS.contains(s)) {
        return Err(KernelError::Invalid(format!("{s} streams per thread: must be one of {STREAM_COUNTS:?}")));
    }
    // Every stream count, with and without software prefetch (SIMD kernels);
    // the best is the ceiling: a read that any access pattern can reach.
    let kernel = ReadKernel::select(opts.isa)?;
    let prefetch_modes: &[bool] = if kernel == ReadKernel::Scalar { &[false] } else { &[false, true] };
    let configs: Vec<(usize, bool)> =
        opts.streams.iter().flat_map(|&s| prefetch_modes.iter().map(move |&p| (s, p))).collect();
    let total_reps = opts.reps * configs.len();
    progress(Progress { done: 0, total: total_reps });
    let reader = Reader::new(threads, opts, kernel)?;

    // Warm-up: one untimed repetition (faults in anything left, trains the
    // prefetchers, brings cache-resident buffers into their cache).
    reader.gbs(configs[0]);
    let mut samples = vec![Vec::with_capacity(opts.reps); configs.len()];
    let mut done = 0;
    for _ in 0..opts.reps {
        for (i, &config) in configs.iter().enumerate() {
            samples[i].push(reader.gbs(config));
            done += 1;
            progress(Progress { done, total: total_reps });
        }
    }
    let sweep: Vec<StreamResult> = configs
        .iter()
        .zip(&mut samples)
        .map(|(&(streams, prefetch), s)| {
            let (median_gbs, min_gbs, max_gbs) = stats(s);
            StreamResult { streams, prefetch, median_gbs, min_gbs, max_gbs }
        })
        .collect();
    let best = sweep.iter().max_by(|a, b| a.median_gbs.total_cmp(&b.median_gbs)).expect("at least one stream count");
    let bandwidth = Bandwidth {
        threads,
        buffer_bytes: (reader.chunk * threads) as u64,
        bytes_per_rep: reader.bytes_per_rep(),
        streams: best.streams,
        prefetch: best.prefetch,
        read_isa: kernel.name().to_string(),
        reps: opts.reps,
        median_gbs: best.median_gbs,
        min_gbs: best.min_gbs,
        max_gbs: best.max_gbs,
        huge_page_bytes: reader.buffer.huge_page_bytes(),
        sweep,
    };
    Ok((bandwidth, reader))
}

/// A DRAM read measurement kept ready for quick repeats: the buffer and
/// threads of a full [`dram_read_bandwidth`] measurement and its two best
/// access patterns (stream count, prefetch), so that work timed between two repeats
/// can be set against the bandwidth of the same minutes. On a shared
/// machine the bandwidth can move by half from one minute to the next; a
/// ratio to a measurement taken an hour earlier says little.
pub struct DramProbe {
    reader: Reader,
    full: Bandwidth,
    /// The read patterns repeated: the full measurement's best, and the best
    /// with another stream count (which pattern wins can change with the
    /// machine's state).
    patterns: Vec<(usize, bool)>,
}

impl std::fmt::Debug for DramProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DramProbe").field("full", &self.full).finish_non_exhaustive()
    }
}

impl DramProbe {
    /// Makes the full DRAM measurement ([`dram_read_bandwidth`]) and keeps
    /// its buffer and threads.
    pub fn dram(threads: usize, opts: &DramOptions) -> Result<DramProbe, KernelError> {
        DramProbe::new(threads, &opts.read_options(cpu::detect())?)
    }

    /// [`DramProbe::dram`] without a size policy ([`read_bandwidth`]'s
    /// options; tests use small buffers).
    pub fn new(threads: usize, opts: &ReadOptions) -> Result<DramProbe, KernelError> {
        let (full, reader) = measure_with_reader(threads, opts, &mut |_| {})?;
        let mut ranked: Vec<&StreamResult> = full.sweep.iter().collect();
        ranked.sort_by(|a, b| b.median_gbs.total_cmp(&a.median_gbs));
        let mut patterns: Vec<(usize, bool)> = Vec::new();
        for s in ranked {
            if patterns.iter().all(|&(streams, _)| streams != s.streams) && patterns.len() < 2 {
                patterns.push((s.streams, s.prefetch));
            }
        }
        Ok(DramProbe { reader, full, patterns })
    }

    /// The full measurement made by [`DramProbe::new`].
    pub fn full(&self) -> &Bandwidth {
        &self.full
    }

    /// Reads the buffer `reps` (at least 1) times with each of the two best
    /// patterns of the full measurement (the best and the best of another
    /// stream count), in turn; the higher of their medians, in GB/s.
    pub fn measure(&self, reps: usize) -> f64 {
        let mut samples = vec![Vec::new(); self.patterns.len()];
        for _ in 0..reps.max(1) {
            for (pattern, samples) in self.patterns.iter().zip(&mut samples) {
                samples.push(self.reader.gbs(*pattern));
            }
        }
        samples.iter_mut().map(|s| stats(s).0).fold(0.0, f64::max)
    }

    /// The read patterns [`DramProbe::measure`] uses: (streams per thread, software prefetch).
    pub fn patterns(&self) -> &[(usize, bool)] {
        &self.patterns
    }
}

/// What every measurement reads: a pool of exactly `threads` threads and a
/// buffer of one chunk per thread, first touched by the thread that reads it.
struct Reader {
    pool: rayon::ThreadPool,
    buffer: Buffer,
    chunk: usize,
    kernel: ReadKernel,
    passes: usize,
}

impl Reader {
    fn new(threads: usize, opts: &ReadOptions, kernel: ReadKernel) -> Result<Reader, KernelError> {
        if threads == 0 {
            return Err(KernelError::Invalid("thread count must be at least 1".into()));
        }
        if opts.passes == 0 {
            return Err(KernelError::Invalid("passes must be at least 1".into()));
        }
        let per_thread = usize::try_from(opts.buffer_bytes / threads as u64)
            .map_err(|_| KernelError::Invalid(format!("buffer of {} bytes is too large", opts.buffer_bytes)))?;
        let grain = if per_thread >= 8 * HUGE_PAGE { HUGE_PAGE } else { GRAIN };
        let chunk = per_thread / grain * grain;
        if chunk == 0 {
            return Err(KernelError::Invalid(format!(
                "buffer of {} bytes is too small for {threads} threads (at least {GRAIN} bytes per thread)",
                opts.buffer_bytes
            )));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("asdsl-roofline-{i}"))
            .build()
            .map_err(|e| KernelError::Invalid(format!("cannot start {threads} threads: {e}")))?;
        let buffer = Buffer::new(&pool, chunk, threads, opts.huge_pages)?;
        Ok(Reader { pool, buffer, chunk, kernel, passes: opts.passes })
    }

    /// Bytes read per repetition, over all threads and passes.
    fn bytes_per_rep(&self) -> u64 {
        self.buffer.len as u64 * self.passes as u64
    }

    /// One timed repetition with `config` (streams, prefetch), in GB/s.
    fn gbs(&self, config: (usize, bool)) -> f64 {
        let secs = timed_rep(&self.pool, self.buffer.as_slice(), self.chunk, self.kernel, config, self.passes);
        self.bytes_per_rep() as f64 / secs.max(1e-9) / 1e9
    }
}

/// (median, min, max) of the samples (sorted in place).
fn stats(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let median = if n % 2 == 1 { samples[n / 2] } else { (samples[n / 2 - 1] + samples[n / 2]) / 2.0 };
    (median, samples[0], samples[n - 1])
}

/// One repetition: every pool thread reads its chunk `passes` times after a
/// common start; returns the seconds from the first start to the last finish.
fn timed_rep(
    pool: &rayon::ThreadPool,
    data: &[u8],
    chunk: usize,
    kernel: ReadKernel,
    (streams, prefetch): (usize, bool),
    passes: usize,
) -> f64 {
    let barrier = SpinBarrier::new(pool.current_num_threads());
    let spans = pool.broadcast(|ctx| {
        let mine = &data[ctx.index() * chunk..][..chunk];
        barrier.wait();
        let start = Instant::now();
        let mut sum = 0u64;
        for _ in 0..passes {
            sum = sum.wrapping_add(kernel.read(black_box(mine), streams, prefetch));
        }
        let end = Instant::now();
        black_box(sum);
        (start, end)
    });
    let first = spans.iter().map(|s| s.0).min().expect("pool has threads");
    let last = spans.iter().map(|s| s.1).max().expect("pool has threads");
    (last - first).as_secs_f64()
}

/// A single-use barrier that spins (yielding now and then, in case there are
/// more threads than cores), so that the threads start within a microsecond.
struct SpinBarrier {
    arrived: AtomicUsize,
    parties: usize,
}

impl SpinBarrier {
    fn new(parties: usize) -> Self {
        SpinBarrier { arrived: AtomicUsize::new(0), parties }
    }

    fn wait(&self) {
        self.arrived.fetch_add(1, Ordering::AcqRel);
        let mut spins = 0u32;
        while self.arrived.load(Ordering::Acquire) < self.parties {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1 << 12) {
                std::thread::yield_now();
            }
        }
    }
}

/// A buffer of `threads` chunks, 2 MiB aligned, each chunk first written by
/// the pool thread of the same index.
struct Buffer {
    vec: Vec<u8>,
    offset: usize,
    len: usize,
}

impl Buffer {
    fn new(pool: &rayon::ThreadPool, chunk: usize, threads: usize, huge_pages: bool) -> Result<Self, KernelError> {
        let len = chunk * threads;
        let mut vec: Vec<u8> = Vec::new();
        vec.try_reserve_exact(len + HUGE_PAGE).map_err(|e| {
            KernelError::Io(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("cannot allocate a {} MiB bandwidth buffer: {e}", len as u64 / MIB),
            ))
        })?;
        let spare = vec.spare_capacity_mut();
        let offset = spare.as_ptr().align_offset(HUGE_PAGE);
        let (prefix, rest) = spare.split_at_mut(offset);
        for b in prefix.iter_mut() {
            b.write(0);
        }
        let region = &mut rest[..len];
        if huge_pages {
            advise_huge_pages(region);
        }
        let chunks: Vec<Mutex<Option<&mut [MaybeUninit<u8>]>>> =
            region.chunks_mut(chunk).map(|c| Mutex::new(Some(c))).collect();
        pool.broadcast(|ctx| {
            let mine = chunks[ctx.index()].lock().map(|mut c| c.take()).ok().flatten();
            if let Some(mine) = mine {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ ctx.index() as u64;
                for line in mine.chunks_mut(8) {
                    x = x.wrapping_mul(0x5851_F42D_4C95_7F2D).wrapping_add(1);
                    for (b, v) in line.iter_mut().zip(x.to_le_bytes()) {
                        b.write(v);
                    }
                }
            }
        });
        if chunks.iter().any(|c| c.lock().map_or(true, |c| c.is_some())) {
            return Err(KernelError::Invalid("a thread did not initialize its chunk".into()));
        }
        drop(chunks);
        // SAFETY: the capacity is at least `offset + len`, and every byte of
        // `0..offset + len` is initialized: the prefix above, and every chunk
        // of the region by the pool thread that took it (checked just above;
        // `broadcast` returns after all threads finished).
        unsafe { vec.set_len(offset + len) };
        Ok(Buffer { vec, offset, len })
    }

    fn as_slice(&self) -> &[u8] {
        &self.vec[self.offset..self.offset + self.len]
    }

    #[cfg(target_os = "linux")]
    fn huge_page_bytes(&self) -> Option<u64> {
        anon_huge_pages(self.as_slice().as_ptr() as usize)
    }

    #[cfg(not(target_os = "linux"))]
    fn huge_page_bytes(&self) -> Option<u64> {
        None
    }
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(region: &mut [MaybeUninit<u8>]) {
    // SAFETY: the range is (part of) our own allocation, and MADV_HUGEPAGE
    // only changes how the kernel backs it, never its contents. Failure
    // (THP disabled) is harmless: the buffer stays on small pages.
    unsafe {
        libc::madvise(region.as_mut_ptr().cast(), region.len(), libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_region: &mut [MaybeUninit<u8>]) {}

/// `AnonHugePages` of the mapping that contains `addr`, from `/proc/self/smaps`.
#[cfg(target_os = "linux")]
fn anon_huge_pages(addr: usize) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            inside = (a..b).contains(&addr);
            continue;
        }
        if inside && let Some(rest) = line.strip_prefix("AnonHugePages:") {
            return rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|kb| kb * 1024);
        }
    }
    None
}

/// `MemAvailable` from `/proc/meminfo`, bytes.
pub(crate) fn available_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line["MemAvailable:".len()..].trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|kb| kb * 1024)
}

/// The read kernel's vector width. Values other than `Scalar` are only made
/// by [`ReadKernel::select`], after checking that the CPU supports them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum ReadKernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl ReadKernel {
    fn select(isa: Option<Isa>) -> Result<Self, KernelError> {
        let isa = match isa {
            Some(isa) => {
                cpu::check(isa)?;
                isa
            }
            None => cpu::try_best_isa()?,
        };
        Ok(match isa {
            Isa::Scalar => ReadKernel::Scalar,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => ReadKernel::Avx2,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Avx512Vnni => ReadKernel::Avx512,
            #[cfg(not(target_arch = "x86_64"))]
            _ => ReadKernel::Scalar,
        })
    }

    fn name(self) -> &'static str {
        match self {
            ReadKernel::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            ReadKernel::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            ReadKernel::Avx512 => "avx512",
        }
    }

    /// Sums `data` as `streams` interleaved sequential streams, prefetching
    /// `PREFETCH_DISTANCE` bytes ahead in each if `prefetch` (SIMD kernels);
    /// `data.len()` must be a multiple of 256 bytes and `streams` in
    /// [`STREAM_COUNTS`]. The streams' parts are laid out by [`stream_spans`].
    fn read(self, data: &[u8], streams: usize, prefetch: bool) -> u64 {
        macro_rules! by_streams {
            ($f:ident) => {
                match (streams, prefetch) {
                    (1, false) => $f::<1, false>(data),
                    (2, false) => $f::<2, false>(data),
                    (4, false) => $f::<4, false>(data),
                    (8, false) => $f::<8, false>(data),
                    (_, false) => $f::<16, false>(data),
                    (1, true) => $f::<1, true>(data),
                    (2, true) => $f::<2, true>(data),
                    (4, true) => $f::<4, true>(data),
                    (8, true) => $f::<8, true>(data),
                    (_, true) => $f::<16, true>(data),
                }
            };
        }
        match self {
            ReadKernel::Scalar => by_streams!(read_scalar),
            #[cfg(target_arch = "x86_64")]
            ReadKernel::Avx2 => {
                // SAFETY: `select` made `Avx2` only after `cpu::check`
                // confirmed avx2 on this CPU.
                unsafe { by_streams!(read_avx2) }
            }
            #[cfg(target_arch = "x86_64")]
            ReadKernel::Avx512 => {
                // SAFETY: `select` made `Avx512` only after `cpu::check`
                // confirmed avx512f on this CPU.
                unsafe { by_streams!(read_avx512) }
            }
        }
    }
}

/// Bytes each stream advances per step (four 64-byte lines).
const STEP: usize = 256;

/// How far apart, beyond equal parts, consecutive streams start: a page,
/// so that no two streams of a power-of-two chunk start a large power of two
/// apart. (On a Zen 4, two streams exactly 512 MiB apart read 19-22 GB/s and
/// the same two 4 KiB further apart 27-32: lines a large power of two apart
/// contend for the same DRAM banks.)
const STREAM_STAGGER: usize = 4096;

/// Where the `S` streams of a chunk of `len` bytes (a multiple of [`STEP`])
/// start and end: nearly equal parts that together cover the chunk, the
/// starts of streams `1..S` moved `s` times a stagger further (at most
/// [`STREAM_STAGGER`], at most a `2 S`-th of a part), and the length of the
/// longest. Every bound is a multiple of `STEP`.
fn stream_spans<const S: usize>(len: usize) -> ([usize; S], [usize; S], usize) {
    assert!(len.is_multiple_of(STEP), "the chunk must be whole steps");
    let part = len / S / STEP * STEP;
    let stagger = STREAM_STAGGER.min(part / (2 * S)) / STEP * STEP;
    let starts: [usize; S] = std::array::from_fn(|s| s * (part + stagger));
    let ends: [usize; S] = std::array::from_fn(|s| if s + 1 < S { starts[s + 1] } else { len });
    let longest = (0..S).map(|s| ends[s] - starts[s]).max().unwrap_or(0);
    (starts, ends, longest)
}

fn read_scalar<const S: usize, const PF: bool>(data: &[u8]) -> u64 {
    let (starts, ends, longest) = stream_spans::<S>(data.len());
    let mut acc = [0u64; 8];
    let mut off = 0;
    while off < longest {
        for s in 0..S {
            if starts[s] + off >= ends[s] {
                continue;
            }
            for (i, word) in data[starts[s] + off..][..STEP].chunks_exact(8).enumerate() {
                let v = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                acc[i % 8] = acc[i % 8].wrapping_add(v);
            }
        }
        off += STEP;
    }
    acc.iter().fold(0, |a, &b| a.wrapping_add(b))
}

/// Prefetches the `STEP` bytes that lie `PREFETCH_DISTANCE` past `p`
/// (a hint: it never faults, even past the end of the buffer).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_step(p: *const u8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    for line in (0..STEP).step_by(64) {
        // SAFETY: prefetching is a hint and never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_DISTANCE + line).cast()) };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn read_avx2<const S: usize, const PF: bool>(data: &[u8]) -> u64 {
    use std::arch::x86_64::*;
    let (starts, ends, longest) = stream_spans::<S>(data.len());
    let base = data.as_ptr();
    let mut acc = [_mm256_setzero_si256(); 8];
    let mut off = 0;
    while off < longest {
        for s in 0..S {
            let at = starts[s] + off;
            if at >= ends[s] {
                continue;
            }
            // SAFETY: at + STEP <= ends[s] <= data.len() (the bounds are
            // whole steps), so the eight 32-byte loads are inside `data`;
            // loadu needs no alignment.
            unsafe {
                if PF {
                    prefetch_step(base.add(at));
                }
                let p = base.add(at).cast::<__m256i>();
                for (k, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_add_epi64(*a, _mm256_loadu_si256(p.add(k)));
                }
            }
        }
        off += STEP;
    }
    let mut v = acc[0];
    for a in &acc[1..] {
        v = _mm256_add_epi64(v, *a);
    }
    (_mm256_extract_epi64::<0>(v) as u64)
        .wrapping_add(_mm256_extract_epi64::<1>(v) as u64)
        .wrapping_add(_mm256_extract_epi64::<2>(v) as u64)
        .wrapping_add(_mm256_extract_epi64::<3>(v) as u64)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn read_avx512<const S: usize, const PF: bool>(data: &[u8]) -> u64 {
    use std::arch::x86_64::*;
    let (starts, ends, longest) = stream_spans::<S>(data.len());
    let base = data.as_ptr();
    let mut acc = [_mm512_setzero_si512(); 4];
    let mut off = 0;
    while off < longest {
        for s in 0..S {
            let at = starts[s] + off;
            if at >= ends[s] {
                continue;
            }
            // SAFETY: at + STEP <= ends[s] <= data.len() (the bounds are
            // whole steps), so the four 64-byte loads are inside `data`;
            // loadu needs no alignment.
            unsafe {
                if PF {
                    prefetch_step(base.add(at));
                }
                let p = base.add(at).cast::<__m512i>();
                for (k, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_add_epi64(*a, _mm512_loadu_si512(p.add(k)));
                }
            }
        }
        off += STEP;
    }
    let v = _mm512_add_epi64(_mm512_add_epi64(acc[0], acc[1]), _mm512_add_epi64(acc[2], acc[3]));
    _mm512_reduce_add_epi64(v) as u64
}

// ---------------------------------------------------------------------------
// Ceilings

/// Calls per second that `bandwidth_gbs` (10^9 bytes/s) allows for a call
/// reading `bytes_per_call` bytes (infinite for zero bytes).
pub fn ceiling(bytes_per_call: u64, bandwidth_gbs: f64) -> f64 {
    bandwidth_gbs * 1e9 / bytes_per_call as f64
}

/// Microseconds per call at `bandwidth_gbs` for `bytes_per_call` bytes.
pub fn us_per_call(bytes_per_call: u64, bandwidth_gbs: f64) -> f64 {
    bytes_per_call as f64 / (bandwidth_gbs * 1e3)
}

/// Weight bytes a GEMV over a `rows x cols` matrix in `format` reads:
/// `rows * format.row_bytes(cols)`. (The activations and outputs, `4 * (rows
/// + cols)` bytes as f32, stay in cache and are not counted.)
pub fn gemv_bytes(format: Format, rows: usize, cols: usize) -> Result<u64, KernelError> {
    let row = format.row_bytes(cols)? as u64;
    row.checked_mul(rows as u64).ok_or_else(|| KernelError::Shape(format!("{rows} x {cols} is too large")))
}

/// The ceiling of one GEMV shape at one bandwidth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GemvCeiling {
    /// Format name (`q4_0`, `q4g32`, ...).
    pub format: String,
    /// Output rows.
    pub rows: usize,
    /// Input columns.
    pub cols: usize,
    /// Weight bytes per call ([`gemv_bytes`]).
    pub bytes_per_call: u64,
    /// The bandwidth assumed, GB/s.
    pub bandwidth_gbs: f64,
    /// Calls per second at that bandwidth.
    pub calls_per_s: f64,
    /// Microseconds per call at that bandwidth.
    pub us_per_call: f64,
}

/// [`gemv_bytes`], [`ceiling`] and [`us_per_call`] together.
pub fn gemv_ceiling(format: Format, rows: usize, cols: usize, bandwidth_gbs: f64) -> Result<GemvCeiling, KernelError> {
    let bytes = gemv_bytes(format, rows, cols)?;
    Ok(GemvCeiling {
        format: format.to_string(),
        rows,
        cols,
        bytes_per_call: bytes,
        bandwidth_gbs,
        calls_per_s: ceiling(bytes, bandwidth_gbs),
        us_per_call: us_per_call(bytes, bandwidth_gbs),
    })
}

/// Parses a matrix shape `ROWSxCOLS` (also `ROWS*COLS`, `ROWS,COLS`), e.g. `4096x11008`.
pub fn parse_shape(s: &str) -> Result<(usize, usize), KernelError> {
    let bad = || KernelError::Invalid(format!("shape `{s}` is not ROWSxCOLS (e.g. 4096x11008)"));
    let (r, c) = s.trim().split_once(['x', 'X', '*', ',']).ok_or_else(bad)?;
    let r: usize = r.trim().parse().map_err(|_| bad())?;
    let c: usize = c.trim().parse().map_err(|_| bad())?;
    if r == 0 || c == 0 {
        return Err(bad());
    }
    Ok((r, c))
}

// ---------------------------------------------------------------------------
// Report

/// Which memory a measurement reads.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemLevel {
    /// Main memory.
    Dram,
    /// Last-level cache.
    L3,
    /// One core's L2.
    L2,
}

impl MemLevel {
    /// `DRAM`, `L3`, `L2`.
    pub fn name(self) -> &'static str {
        match self {
            MemLevel::Dram => "DRAM",
            MemLevel::L3 => "L3",
            MemLevel::L2 => "L2",
        }
    }
}

/// The bandwidths at one thread count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RooflineRow {
    /// Threads.
    pub threads: usize,
    /// DRAM read bandwidth.
    pub dram: Bandwidth,
    /// L3-resident read bandwidth (absent when skipped).
    pub l3: Option<Bandwidth>,
    /// L2-resident read bandwidth (absent when skipped).
    pub l2: Option<Bandwidth>,
}

/// The machine's bandwidths, per thread count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RooflineReport {
    /// The machine.
    pub cpu: CpuInfo,
    /// One row per thread count measured.
    pub rows: Vec<RooflineRow>,
}

impl RooflineReport {
    /// The row of `threads`, if measured.
    pub fn row(&self, threads: usize) -> Option<&RooflineRow> {
        self.rows.iter().find(|r| r.threads == threads)
    }

    /// The best median DRAM bandwidth over the thread counts, GB/s.
    pub fn best_dram_gbs(&self) -> Option<f64> {
        self.rows.iter().map(|r| r.dram.median_gbs).max_by(f64::total_cmp)
    }
}

/// Options of [`measure_roofline`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RooflineOptions {
    /// DRAM measurement.
    pub dram: DramOptions,
    /// L2 and L3 measurements.
    pub cache: CacheOptions,
    /// Measure DRAM only.
    pub skip_cache: bool,
}

/// Where [`measure_roofline`] is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RooflineProgress {
    /// Index of the current measurement.
    pub step: usize,
    /// Number of measurements.
    pub steps: usize,
    /// Threads of the current measurement.
    pub threads: usize,
    /// Memory level of the current measurement.
    pub level: MemLevel,
    /// Within the current measurement.
    pub progress: Progress,
}

/// Measures DRAM, L3 and L2 read bandwidth at each thread count.
pub fn measure_roofline(
    threads: &[usize],
    opts: &RooflineOptions,
    progress: &mut dyn FnMut(RooflineProgress),
) -> Result<RooflineReport, KernelError> {
    let cpu = cpu::detect();
    let dram_opts = opts.dram.read_options(cpu)?;
    let levels: &[MemLevel] =
        if opts.skip_cache { &[MemLevel::Dram] } else { &[MemLevel::Dram, MemLevel::L3, MemLevel::L2] };
    let steps = threads.len() * levels.len();
    let mut rows = Vec::with_capacity(threads.len());
    let mut step = 0;
    for &t in threads {
        let mut row = RooflineRow { threads: t, dram: empty_bandwidth(t), l3: None, l2: None };
        for &level in levels {
            let read = match level {
                MemLevel::Dram => dram_opts.clone(),
                MemLevel::L3 => opts.cache.l3_options(cpu, t),
                MemLevel::L2 => opts.cache.l2_options(cpu, t),
            };
            let bw = read_bandwidth_with(t, &read, &mut |p| {
                progress(RooflineProgress { step, steps, threads: t, level, progress: p })
            })?;
            match level {
                MemLevel::Dram => row.dram = bw,
                MemLevel::L3 => row.l3 = Some(bw),
                MemLevel::L2 => row.l2 = Some(bw),
            }
            step += 1;
        }
        rows.push(row);
    }
    Ok(RooflineReport { cpu: cpu.clone(), rows })
}

fn empty_bandwidth(threads: usize) -> Bandwidth {
    Bandwidth {
        threads,
        buffer_bytes: 0,
        bytes_per_rep: 0,
        streams: 0,
        prefetch: false,
        read_isa: String::new(),
        reps: 0,
        median_gbs: 0.0,
        min_gbs: 0.0,
        max_gbs: 0.0,
        huge_page_bytes: None,
        sweep: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{CacheInfo, CacheKind};

    fn fake_cpu(l2: Option<u64>, l3: Option<u64>) -> CpuInfo {
        let mut caches =
            vec![CacheInfo { level: 1, kind: CacheKind::Data, size_bytes: 48 << 10, shared_by_logical: 1 }];
        if let Some(l2) = l2 {
            caches.push(CacheInfo { level: 2, kind: CacheKind::Unified, size_bytes: l2, shared_by_logical: 1 });
        }
        if let Some(l3) = l3 {
            caches.push(CacheInfo { level: 3, kind: CacheKind::Unified, size_bytes: l3, shared_by_logical: 2 });
        }
        CpuInfo {
            vendor: "GenuineIntel".into(),
            brand: "test".into(),
            family: 6,
            model: 207,
            stepping: 2,
            features: vec![],
            logical_cores: 2,
            physical_cores: 2,
            caches,
        }
    }

    #[test]
    fn small_buffer_bandwidth_is_positive_and_finite() {
        for isa in Isa::ALL.iter().copied().filter(|&i| cpu::available(i).unwrap_or(false)) {
            for threads in [1, 2] {
                let opts = ReadOptions {
                    buffer_bytes: 256 << 10,
                    reps: 3,
                    passes: 4,
                    streams: vec![1, 2, 4, 8, 16],
                    isa: Some(isa),
                    huge_pages: false,
                };
                // Each stream count with and without software prefetch (SIMD kernels).
                let configs = if isa == Isa::Scalar { 5 } else { 10 };
                let mut calls = 0;
                let bw = read_bandwidth_with(threads, &opts, &mut |p| {
                    assert!(p.done <= p.total && p.total == 3 * configs);
                    calls += 1;
                })
                .unwrap();
                assert_eq!(calls, 3 * configs + 1, "one before, one per timed repetition");
                assert_eq!(bw.threads, threads);
                assert_eq!(bw.buffer_bytes, 256 << 10);
                assert_eq!(bw.bytes_per_rep, 4 * (256 << 10));
                assert_eq!(bw.sweep.len(), configs);
                for s in &bw.sweep {
                    assert!(s.min_gbs.is_finite() && s.min_gbs > 0.0, "{isa}: {s:?}");
                    assert!(s.min_gbs <= s.median_gbs && s.median_gbs <= s.max_gbs, "{s:?}");
                }
                let best = bw.sweep.iter().map(|s| s.median_gbs).fold(0.0, f64::max);
                assert_eq!(bw.median_gbs, best);
                // No machine reads memory at a petabyte per second: the loads happened.
                assert!(bw.max_gbs < 1e6, "{bw:?}");
            }
        }
    }

    #[test]
    fn a_probe_repeats_the_two_best_patterns_of_its_full_measurement() {
        let opts = ReadOptions {
            buffer_bytes: 256 << 10,
            reps: 3,
            passes: 4,
            streams: vec![1, 4],
            isa: None,
            huge_pages: false,
        };
        for threads in [1, 2] {
            let probe = DramProbe::new(threads, &opts).unwrap();
            let full = probe.full();
            assert_eq!((full.threads, full.buffer_bytes), (threads, 256 << 10));
            assert!(opts.streams.contains(&full.streams), "{full:?}");
            assert_eq!(probe.patterns()[0], (full.streams, full.prefetch), "the best first");
            assert_eq!(probe.patterns().len(), 2, "1 and 4 streams: {:?}", probe.patterns());
            assert_ne!(probe.patterns()[0].0, probe.patterns()[1].0, "two stream counts");
            for reps in [0, 1, 5] {
                let gbs = probe.measure(reps);
                assert!(gbs.is_finite() && gbs > 0.0 && gbs < 1e6, "{reps} reps: {gbs}");
            }
        }
        assert!(DramProbe::new(0, &opts).is_err(), "no threads");
        assert!(DramProbe::new(1, &ReadOptions { streams: vec![3], ..opts.clone() }).is_err(), "3 streams");
    }

    #[test]
    fn streams_cover_the_chunk_once_and_start_apart_from_powers_of_two() {
        fn check<const S: usize>(len: usize) {
            let (starts, ends, longest) = stream_spans::<S>(len);
            assert_eq!(starts[0], 0);
            assert_eq!(ends[S - 1], len);
            for s in 0..S {
                assert!(starts[s] % STEP == 0 && ends[s] % STEP == 0, "{S} streams of {len}: whole steps");
                assert!(starts[s] <= ends[s] && ends[s] - starts[s] <= longest, "the longest");
                if s + 1 < S {
                    assert_eq!(ends[s], starts[s + 1], "contiguous");
                }
            }
            if len >= 1 << 20 {
                for a in 0..S {
                    for b in a + 1..S {
                        let distance = starts[b] - starts[a];
                        assert!(!distance.is_power_of_two(), "{S} streams of {len}: {distance} apart");
                        assert!(distance % (64 << 10) != 0, "{S} streams of {len}: {distance} apart");
                    }
                }
            }
        }
        for len in [0, STEP, 4096, 16 * 4096, 256 << 10, 1 << 30, (1 << 30) + 3 * 4096] {
            check::<1>(len);
            check::<2>(len);
            check::<4>(len);
            check::<8>(len);
            check::<16>(len);
        }
    }

    #[test]
    fn read_kernels_agree_with_each_other() {
        let data: Vec<u8> = (0..16 * 4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let expected = data
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
            .fold(0u64, |a, b| a.wrapping_add(b));
        for isa in Isa::ALL.iter().copied().filter(|&i| cpu::available(i).unwrap_or(false)) {
            let k = ReadKernel::select(Some(isa)).unwrap();
            for s in STREAM_COUNTS {
                for prefetch in [false, true] {
                    assert_eq!(k.read(&data, s, prefetch), expected, "{isa} with {s} streams, prefetch {prefetch}");
                }
            }
        }
    }

    #[test]
    fn bad_options_are_errors() {
        let ok = ReadOptions::new(64 << 10);
        assert!(read_bandwidth(0, &ok).is_err());
        assert!(read_bandwidth(1, &ReadOptions { reps: 0, ..ok.clone() }).is_err());
        assert!(read_bandwidth(1, &ReadOptions { streams: vec![3], ..ok.clone() }).is_err());
        assert!(read_bandwidth(1, &ReadOptions { streams: vec![], ..ok.clone() }).is_err());
        assert!(read_bandwidth(4, &ReadOptions { buffer_bytes: 8192, ..ok.clone() }).is_err());
        assert!(read_bandwidth(1, &ok).is_ok());
    }

    #[test]
    fn stats_of_samples() {
        assert_eq!(stats(&mut [3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(stats(&mut [4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert_eq!(stats(&mut [7.0]), (7.0, 7.0, 7.0));
    }

    #[test]
    fn ceiling_arithmetic() {
        // 10 GB/s over 10 MB per call: 1000 calls/s, 1000 µs per call.
        assert!((ceiling(10_000_000, 10.0) - 1000.0).abs() < 1e-9);
        assert!((us_per_call(10_000_000, 10.0) - 1000.0).abs() < 1e-9);
        // 4096 x 4096 in Q4_0: 4096 rows of 128 blocks of 18 bytes.
        let b = gemv_bytes(Format::Q4_0, 4096, 4096).unwrap();
        assert_eq!(b, 4096 * 128 * 18);
        let c = gemv_ceiling(Format::Q4_0, 4096, 4096, 20.0).unwrap();
        assert_eq!(c.bytes_per_call, 9_437_184);
        assert!((c.us_per_call - 471.8592).abs() < 1e-9, "{c:?}");
        assert!((c.calls_per_s * c.us_per_call - 1e6).abs() < 1e-6);
        // Q8_0 is 34 bytes per 32 weights; Q4_K 144 per 256.
        assert_eq!(gemv_bytes(Format::Q8_0, 2, 64).unwrap(), 2 * 2 * 34);
        assert_eq!(gemv_bytes(Format::Q4K, 3, 512).unwrap(), 3 * 2 * 144);
        // Not a whole number of blocks.
        assert!(gemv_bytes(Format::Q4K, 1, 100).is_err());
    }

    #[test]
    fn shapes_parse() {
        assert_eq!(parse_shape("4096x11008").unwrap(), (4096, 11008));
        assert_eq!(parse_shape(" 2X3 ").unwrap(), (2, 3));
        assert_eq!(parse_shape("5*7").unwrap(), (5, 7));
        for bad in ["4096", "x4", "4x", "0x4", "ax3", "4x3x2"] {
            assert!(parse_shape(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dram_size_policy() {
        let spr = fake_cpu(Some(2 << 20), Some(260 * MIB));
        let size = default_dram_bytes(&spr);
        assert!(size > 4 * 260 * MIB && size.is_multiple_of(256 * MIB), "{size}");
        assert_eq!(size, 1280 * MIB);
        let small = fake_cpu(Some(1 << 20), Some(32 * MIB));
        assert_eq!(default_dram_bytes(&small), GIB);
        let exact = fake_cpu(None, Some(256 * MIB));
        assert_eq!(default_dram_bytes(&exact), 1280 * MIB);
        assert_eq!(default_dram_bytes(&fake_cpu(None, None)), GIB);
        // A buffer that does not exceed 4x the LLC is refused.
        let opts = DramOptions { buffer_bytes: Some(GIB), ..DramOptions::default() };
        assert!(matches!(opts.read_options(&spr), Err(KernelError::Invalid(_))));
        let opts = DramOptions { buffer_bytes: Some(2 * GIB), ..DramOptions::default() };
        if available_memory_bytes().is_none_or(|m| m > 4 * GIB) {
            assert_eq!(opts.read_options(&spr).unwrap().buffer_bytes, 2 * GIB);
        }
        // Far more than any machine has is refused before allocating.
        let opts = DramOptions { buffer_bytes: Some(1 << 50), ..DramOptions::default() };
        if available_memory_bytes().is_some() {
            assert!(opts.read_options(&spr).is_err());
        }
    }

    #[test]
    fn cache_buffer_sizes() {
        let spr = fake_cpu(Some(2 << 20), Some(260 * MIB));
        let c = CacheOptions::default();
        let l2 = c.l2_options(&spr, 2);
        assert_eq!(l2.buffer_bytes, 2 * MIB);
        assert_eq!(l2.passes, 256);
        let l3 = c.l3_options(&spr, 2);
        assert_eq!(l3.buffer_bytes, 64 * MIB);
        assert_eq!(l3.passes, 8);
        let small = fake_cpu(Some(256 << 10), Some(8 * MIB));
        assert_eq!(c.l3_options(&small, 1).buffer_bytes, 4 * MIB);
    }
}
