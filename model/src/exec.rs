//! The threads a model runs on: the kernels' [`Threads`] and a pool of the
//! same size for the runtime's own parallel loops (f32 GEMV, attention).

use asdsl_kernels::run::Threads;
use rayon::prelude::*;

use crate::error::Result;

/// Threads for one model run. Built once and passed to every forward call;
/// with one thread nothing is spawned and everything runs on the caller.
#[derive(Debug)]
pub struct Exec {
    threads: Threads,
    pool: Option<rayon::ThreadPool>,
}

impl Exec {
    /// `count` threads (at least 1).
    pub fn new(count: usize) -> Result<Exec> {
        let threads = Threads::new(count)?;
        let pool = if count > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(count)
                    .thread_name(|i| format!("asdsl-model-{i}"))
                    .build()
                    .map_err(|e| crate::ModelError::Invalid(format!("cannot start {count} threads: {e}")))?,
            )
        } else {
            None
        };
        Ok(Exec { threads, pool })
    }

    /// The kernels' thread pool.
    pub fn threads(&self) -> &Threads {
        &self.threads
    }

    /// The number of threads.
    pub fn count(&self) -> usize {
        self.threads.count()
    }

    /// Calls `f(i, chunk)` for each `chunk`-sized piece of `data` (the last
    /// may be shorter), in parallel when there are several threads.
    pub fn for_each_chunk<T: Send>(&self, data: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
        let chunk = chunk.max(1);
        match &self.pool {
            Some(pool) if data.len() > chunk => {
                pool.install(|| data.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c)))
            }
            _ => data.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c)),
        }
    }

    /// As [`for_each_chunk`](Self::for_each_chunk) over two slices cut into
    /// the same number of pieces (`chunk_a` and `chunk_b` elements each).
    pub fn for_each_chunk2<A: Send, B: Send>(
        &self,
        a: &mut [A],
        chunk_a: usize,
        b: &mut [B],
        chunk_b: usize,
        f: impl Fn(usize, &mut [A], &mut [B]) + Sync + Send,
    ) {
        let (chunk_a, chunk_b) = (chunk_a.max(1), chunk_b.max(1));
        match &self.pool {
            Some(pool) if a.len() > chunk_a => pool.install(|| {
                a.par_chunks_mut(chunk_a).zip(b.par_chunks_mut(chunk_b)).enumerate().for_each(|(i, (x, y))| f(i, x, y))
            }),
            _ => a.chunks_mut(chunk_a).zip(b.chunks_mut(chunk_b)).enumerate().for_each(|(i, (x, y))| f(i, x, y)),
        }
    }
}
