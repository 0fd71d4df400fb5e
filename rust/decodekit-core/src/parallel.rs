//! The library's own rayon pool. Batched primitives run their rows on it; single rows stay serial
//! (spawning costs more than it saves for one row). Its size comes from `DECODEKIT_NUM_THREADS`, else the
//! number of available cores, and can be changed at run time with [`set_num_threads`].

use std::sync::{Arc, RwLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{CoreError, Result};

static POOL: RwLock<Option<Arc<ThreadPool>>> = RwLock::new(None);

fn default_threads() -> usize {
    std::env::var("DECODEKIT_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
}

fn build(threads: usize) -> Result<Arc<ThreadPool>> {
    ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("decodekit-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| CoreError::Internal(format!("could not start the thread pool: {e}")))
}

/// The pool, created on first use.
pub fn pool() -> Result<Arc<ThreadPool>> {
    if let Some(p) = POOL.read().map_err(|_| poisoned())?.as_ref() {
        return Ok(Arc::clone(p));
    }
    let mut slot = POOL.write().map_err(|_| poisoned())?;
    if let Some(p) = slot.as_ref() {
        return Ok(Arc::clone(p));
    }
    let p = build(default_threads())?;
    *slot = Some(Arc::clone(&p));
    Ok(p)
}

fn poisoned() -> CoreError {
    CoreError::Internal("the thread-pool lock was poisoned by an earlier panic".into())
}

/// Replace the pool with one of `threads` workers (`0` restores the default). Calls already running keep
/// the pool they started on.
pub fn set_num_threads(threads: usize) -> Result<()> {
    let threads = if threads == 0 { default_threads() } else { threads };
    let p = build(threads)?;
    *POOL.write().map_err(|_| poisoned())? = Some(p);
    Ok(())
}

/// The number of workers in the current pool.
pub fn num_threads() -> Result<usize> {
    Ok(pool()?.current_num_threads())
}

/// Run `f(row)` for every row, on the pool when there is more than one row, and return the results in row
/// order. The first failing row (by index, not by time) decides the error, so messages are deterministic.
pub fn map_rows<T, F>(rows: usize, f: F) -> Result<Vec<T>>
where
    T: Send,
    F: Fn(usize) -> Result<T> + Sync + Send,
{
    use rayon::prelude::*;
    if rows <= 1 {
        return (0..rows).map(f).collect();
    }
    let results: Vec<Result<T>> = pool()?.install(|| (0..rows).into_par_iter().map(&f).collect());
    results.into_iter().collect()
}

/// Below this many output elements, rows run on the calling thread: waking the pool costs tens of
/// microseconds, more than the work (e.g. a softmax over a few short rows).
const SEQUENTIAL_ELEMENTS: usize = 16 * 1024;

/// Run `f(row, chunk)` over the `rows` equal chunks of `out`, in parallel when there is more than one row
/// and enough work. The first failing row (by index) decides the error.
pub fn for_each_row_mut<T, F>(out: &mut [T], rows: usize, f: F) -> Result<()>
where
    T: Send,
    F: Fn(usize, &mut [T]) -> Result<()> + Sync + Send,
{
    use rayon::prelude::*;
    if rows == 0 {
        return Ok(());
    }
    let width = out.len() / rows;
    if rows == 1 || width == 0 || out.len() < SEQUENTIAL_ELEMENTS {
        for (i, chunk) in out.chunks_mut(width.max(1)).enumerate().take(rows) {
            f(i, chunk)?;
        }
        return Ok(());
    }
    let results: Vec<Result<()>> = pool()?.install(|| {
        out.par_chunks_mut(width)
            .enumerate()
            .map(|(i, c)| f(i, c))
            .collect()
    });
    results.into_iter().collect()
}
