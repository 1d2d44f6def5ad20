//! The threads a model runs on: the kernels' [`Threads`], which also run the
//! runtime's own parallel loops (f32 GEMV, attention).

use asdsl_kernels::run::Threads;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::Result;

/// Threads for one model run. Built once and passed to every forward call;
/// with one thread nothing is spawned and everything runs on the caller.
/// The kernels and the runtime's own loops share one team of threads.
#[derive(Debug)]
pub struct Exec {
    threads: Threads,
}

/// A pointer to the elements of a slice whose disjoint chunks go to
/// different threads.
struct Shared<T>(*mut T);
impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Shared<T> {}
// SAFETY: each chunk behind the pointer is handed to exactly one thread (see
// `for_each_chunk2`), and the slice outlives the broadcast that uses it.
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Shared<T> {}

impl Exec {
    /// `count` threads (at least 1).
    pub fn new(count: usize) -> Result<Exec> {
        Ok(Exec { threads: Threads::new(count)? })
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
        let mut none: [u8; 0] = [];
        self.for_each_chunk2(data, chunk, &mut none, 0, |i, a, _| f(i, a));
    }

    /// As [`for_each_chunk`](Self::for_each_chunk) over two slices cut into
    /// the same number of pieces (`chunk_a` and `chunk_b` elements each;
    /// `b` may be shorter, even empty, and then gives shorter pieces).
    pub fn for_each_chunk2<A: Send, B: Send>(
        &self,
        a: &mut [A],
        chunk_a: usize,
        b: &mut [B],
        chunk_b: usize,
        f: impl Fn(usize, &mut [A], &mut [B]) + Sync + Send,
    ) {
        let chunk_a = chunk_a.max(1);
        let pieces = a.len().div_ceil(chunk_a);
        if self.count() == 1 || pieces <= 1 {
            for i in 0..pieces {
                let (a0, a1) = (i * chunk_a, ((i + 1) * chunk_a).min(a.len()));
                let (b0, b1) = ((i * chunk_b).min(b.len()), ((i + 1) * chunk_b).min(b.len()));
                f(i, &mut a[a0..a1], &mut b[b0..b1]);
            }
            return;
        }
        let (a_len, b_len) = (a.len(), b.len());
        let (pa, pb) = (Shared(a.as_mut_ptr()), Shared(b.as_mut_ptr()));
        let next = AtomicUsize::new(0);
        self.threads.broadcast(|_| {
            let (pa, pb) = (pa, pb);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= pieces {
                    break;
                }
                let (a0, a1) = (i * chunk_a, ((i + 1) * chunk_a).min(a_len));
                let (b0, b1) = ((i * chunk_b).min(b_len), ((i + 1) * chunk_b).min(b_len));
                // SAFETY: piece `i` is taken by exactly one thread (the
                // counter), pieces of different `i` are disjoint ranges
                // within `a` and `b`, and both slices are borrowed mutably
                // for the whole broadcast.
                let (x, y) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(pa.0.add(a0), a1 - a0),
                        std::slice::from_raw_parts_mut(pb.0.add(b0), b1 - b0),
                    )
                };
                f(i, x, y);
            }
        });
    }
}
