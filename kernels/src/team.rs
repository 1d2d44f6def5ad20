//! A team of worker threads that spin between jobs.
//!
//! Decoding one token runs a hundred or more GEMVs of tens of microseconds
//! each; waking a sleeping thread (a futex, more under a hypervisor) costs
//! about as much. So, as llama.cpp's thread pool does, the workers of a
//! [`Team`] spin on the job counter for a while after each job and only then
//! sleep on a condition variable.
//!
//! A job is cut into `pieces` (one per thread) that are *claimed*, not
//! assigned: the caller and the workers take pieces from one atomic counter
//! until none is left, so a worker that is slow to wake (or descheduled
//! because the machine is busy) costs nothing, since the caller runs its
//! piece. The counter carries the job's epoch and its number of pieces, so
//! a worker that wakes late can never claim a piece of a job that has
//! finished (nor, reading the next job's size, one more piece of it).
//!
//! One job runs at a time (callers are serialized by a lock); the job is a
//! `Fn(piece)` closure borrowed for the duration of [`Team::run`], which
//! returns only when every piece is done.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it sleeps.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_millis(2);

/// A job: called with the piece index, `0..pieces`.
type Job<'a> = &'a (dyn Fn(usize) + Sync);

/// The most pieces a job can have (the claim word keeps 16 bits for them).
pub(crate) const MAX_PIECES: usize = 0xFFFF;

struct Shared {
    /// `epoch << 32 | pieces << 16 | next piece`: a new epoch publishes a
    /// job and its size in one store; claiming a piece increments the low
    /// 16 bits, only while the epoch is unchanged and pieces are left. (The
    /// size must travel in the same word: read from anywhere else, a worker
    /// late for a finished job could see the next job's larger size while
    /// the old epoch is still current and claim a piece past the old end,
    /// which then runs the next job's piece before that job is published.)
    claim: AtomicU64,
    /// The current job, with its lifetime erased: set before its epoch is
    /// published, valid until all its pieces are done (see [`Team::run`]).
    job: UnsafeCell<Option<Job<'static>>>,
    /// Pieces of the current job finished.
    finished: AtomicUsize,
    /// Workers asleep (or about to be) on `wake`.
    sleepers: AtomicUsize,
    shutdown: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
    /// A piece run by a worker panicked (re-raised by the caller).
    panicked: AtomicBool,
}

// SAFETY: `job` is written only by the caller holding `Team::caller`, before
// the epoch that publishes it or after all of the previous job's pieces are
// finished; it is read only by a thread that has just claimed a piece of the
// current epoch, which cannot have finished yet. The rest is atomics and std
// synchronization.
unsafe impl Sync for Shared {}

impl Shared {
    /// No job yet (epoch 0).
    fn idle() -> Shared {
        Shared {
            claim: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            finished: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            panicked: AtomicBool::new(false),
        }
    }
}

/// The calling thread plus `threads - 1` workers.
pub(crate) struct Team {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serializes callers: one job at a time.
    caller: Mutex<()>,
}

impl Team {
    /// A team of `threads` (at least 2): the caller and `threads - 1`
    /// workers named `{name}-{i}`.
    pub(crate) fn new(threads: usize, name: &str) -> std::io::Result<Team> {
        let shared = Arc::new(Shared::idle());
        let mut team = Team { shared, workers: Vec::with_capacity(threads.saturating_sub(1)), caller: Mutex::new(()) };
        for i in 1..threads {
            let mine = Arc::clone(&team.shared);
            let handle = std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || work(&mine))?;
            team.workers.push(handle);
        }
        Ok(team)
    }

    /// Runs `job(piece)` for every piece `0..pieces`, in parallel on the
    /// team, the calling thread included; returns when all are done. A
    /// panic in any piece is re-raised here. `pieces` is at most
    /// [`MAX_PIECES`] (callers pass a thread count, checked against it).
    pub(crate) fn run(&self, pieces: usize, job: &(dyn Fn(usize) + Sync)) {
        if pieces == 0 {
            return;
        }
        assert!(pieces <= MAX_PIECES, "a job of {pieces} pieces (at most {MAX_PIECES})");
        let _serial = self.caller.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: the lifetime is erased only while this function runs: it
        // returns (or unwinds) only after every piece is finished, and no
        // piece can be claimed after that (see `claim`).
        let erased: Job<'static> = unsafe { std::mem::transmute::<Job<'_>, Job<'static>>(job) };
        // SAFETY: we hold `caller`, and the previous job's pieces are all
        // finished, so no thread reads `job` now.
        unsafe { *s.job.get() = Some(erased) };
        s.finished.store(0, Ordering::Relaxed);
        s.panicked.store(false, Ordering::Relaxed);
        let epoch = (s.claim.load(Ordering::Relaxed) >> 32).wrapping_add(1) & 0xFFFF_FFFF;
        s.claim.store(epoch << 32 | (pieces as u64) << 16, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        // Our pieces; a panic is held until the other threads' pieces are
        // finished (the job must outlive them).
        let mut caller_panic = None;
        while let Some(piece) = claim(s, epoch) {
            if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(piece))) {
                caller_panic.get_or_insert(payload);
            }
            s.finished.fetch_add(1, Ordering::Release);
        }
        let mut spins = 0u32;
        while s.finished.load(Ordering::Acquire) < pieces {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) {
                std::thread::yield_now();
            }
        }
        // SAFETY: every piece is finished and none can be claimed any more.
        unsafe { *s.job.get() = None };
        if let Some(payload) = caller_panic {
            std::panic::resume_unwind(payload);
        }
        if s.panicked.load(Ordering::Acquire) {
            panic!("a worker thread panicked while running a job");
        }
    }
}

/// Claims the next piece of the job of `epoch`, if that job is still the
/// current one and has pieces left.
fn claim(s: &Shared, epoch: u64) -> Option<usize> {
    let mut current = s.claim.load(Ordering::Acquire);
    loop {
        let next = (current & 0xFFFF) as usize;
        let pieces = ((current >> 16) & 0xFFFF) as usize;
        if current >> 32 != epoch || next >= pieces {
            return None;
        }
        match s.claim.compare_exchange_weak(current, current + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(next),
            Err(seen) => current = seen,
        }
    }
}

fn work(s: &Shared) {
    let mut seen = 0u64;
    loop {
        // Wait for a new epoch: spin, then sleep.
        let started = Instant::now();
        let mut spins = 0u32;
        let epoch = loop {
            if s.shutdown.load(Ordering::Acquire) {
                return;
            }
            let epoch = s.claim.load(Ordering::Acquire) >> 32;
            if epoch != seen {
                break epoch;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(256) || started.elapsed() < SPIN_BEFORE_SLEEP {
                std::hint::spin_loop();
                continue;
            }
            let guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            // Re-checked under the lock after announcing the sleep: a caller
            // that published before seeing `sleepers` notifies after taking
            // the lock, that is after this thread waits.
            let guard = if s.claim.load(Ordering::SeqCst) >> 32 == seen && !s.shutdown.load(Ordering::SeqCst) {
                s.wake.wait(guard).unwrap_or_else(|e| e.into_inner())
            } else {
                guard
            };
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
            drop(guard);
        };
        seen = epoch;
        while let Some(piece) = claim(s, epoch) {
            // SAFETY: a piece of the current job is claimed and not
            // finished, so the caller is still in `run` and `job` holds its
            // job (written before the epoch was published).
            let job = unsafe { *s.job.get() };
            if let Some(job) = job {
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(piece)));
                if ran.is_err() {
                    s.panicked.store(true, Ordering::Release);
                }
            }
            s.finished.fetch_add(1, Ordering::Release);
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _g = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_piece_runs_once_per_job() {
        let team = Team::new(3, "test").unwrap();
        for round in 0..2000 {
            let pieces = 1 + round % 5;
            let hits: Vec<AtomicUsize> = (0..pieces).map(|_| AtomicUsize::new(0)).collect();
            team.run(pieces, &|piece| {
                hits[piece].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "round {round}");
            if round == 1000 {
                // Let the workers fall asleep, then wake them.
                std::thread::sleep(SPIN_BEFORE_SLEEP * 3);
            }
        }
    }

    #[test]
    fn a_late_worker_claims_nothing_of_a_finished_job() {
        let s = &Shared::idle();
        // Job 7 of four pieces, all claimed; the next job (of five) is not
        // yet published. A worker that saw epoch 7 late finds nothing left.
        s.claim.store(7 << 32 | 4 << 16 | 4, Ordering::SeqCst);
        assert_eq!(claim(s, 7), None);
        s.claim.store(7 << 32 | 4 << 16 | 3, Ordering::SeqCst);
        assert_eq!(claim(s, 7), Some(3));
        assert_eq!(claim(s, 6), None);
    }

    #[test]
    fn a_worker_panic_reaches_the_caller() {
        let team = Team::new(2, "test").unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            team.run(64, &|piece| assert!(piece < 60, "boom"));
        }));
        assert!(caught.is_err());
        // The team still works.
        let count = AtomicUsize::new(0);
        team.run(2, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }
}
