//! The per-namespace worker pool: jobs, each for one named namespace, run
//! on a few threads that enter the namespace first. `up` configures through
//! it, `down` reads marks through it.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, anyhow};

use crate::sys::netns;
use crate::sys::rtnl::Rtnl;

/// Runs `work` once per job, each inside its namespace with a netlink
/// connection of that namespace, on a pool of threads. Returns the first
/// error, naming the namespace, and stops taking jobs after it (or after
/// SIGINT/SIGTERM, see `interrupt`). Counts finished jobs in `done`.
pub(crate) fn in_namespaces<T, F, Fut>(
    jobs: Vec<(String, T)>,
    done: Option<&AtomicUsize>,
    work: F,
) -> Result<()>
where
    T: Send,
    F: Fn(Rtnl, T) -> Fut + Sync,
    Fut: Future<Output = Result<()>>,
{
    // One runtime per thread, whatever the number of namespaces it serves.
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a netlink runtime")
    };
    let work = |rt: &tokio::runtime::Runtime, job| {
        rt.block_on(async {
            let rtnl = Rtnl::new()?;
            work(rtnl, job).await
        })
    };
    let options = Options {
        per_thread: 1,
        stop_on_error: true,
        done,
    };
    match pool(jobs, options, runtime, work).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs `work` with a netlink connection in a network namespace of its
/// own, which nothing else sees and which ends with the call: for probing
/// the kernel before a lab has any namespace.
pub(crate) fn in_private_namespace<T, F, Fut>(work: F) -> Result<T>
where
    T: Send,
    F: FnOnce(Rtnl) -> Fut + Send,
    Fut: Future<Output = Result<T>>,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            // This thread is ours, and ends here: its namespace with it.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .context("unshare(CLONE_NEWNET) for a probe")?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a netlink runtime")?;
            rt.block_on(async { work(Rtnl::new()?).await })
        })
        .join()
        .unwrap_or_else(|_| Err(anyhow!("a probe thread panicked")))
    })
}

/// How [`pool`] runs its jobs.
pub(crate) struct Options<'a> {
    /// Jobs per thread: one thread per this many, a few per core at most.
    pub(crate) per_thread: usize,
    /// Stop taking jobs after the first failure or an interruption.
    pub(crate) stop_on_error: bool,
    /// Counts every job finished, failed or not (a progress line reads it).
    pub(crate) done: Option<&'a AtomicUsize>,
}

/// Runs `work` once per job inside its namespace on a pool of threads, each
/// with its own `init()` state; goes on past failures (unless
/// `stop_on_error`) and returns them all, each naming its namespace.
pub(crate) fn pool<T, S, F>(
    jobs: Vec<(String, T)>,
    options: Options<'_>,
    init: impl Fn() -> Result<S> + Sync,
    work: F,
) -> Vec<anyhow::Error>
where
    T: Send,
    F: Fn(&S, T) -> Result<()> + Sync,
{
    if jobs.is_empty() {
        return Vec::new();
    }
    let Options {
        per_thread,
        stop_on_error,
        done,
    } = options;
    // Netlink work is mostly kernel time, short waits included: a few
    // threads per core keep the cores busy without thrashing.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = jobs.len().div_ceil(per_thread.max(1)).min(cores * 2).max(1);
    let queue = Mutex::new(jobs.into_iter().rev().collect::<Vec<_>>());
    let errors: Mutex<Vec<anyhow::Error>> = Mutex::new(Vec::new());
    let fail = |e: anyhow::Error| {
        if let Ok(mut all) = errors.lock() {
            all.push(e);
        }
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut state = None;
                loop {
                    if stop_on_error && errors.lock().map_or(true, |e| !e.is_empty()) {
                        return;
                    }
                    if stop_on_error && let Err(e) = crate::sys::interrupt::check() {
                        return fail(e);
                    }
                    let Some((ns, job)) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                        return;
                    };
                    if state.is_none() {
                        match init() {
                            Ok(s) => state = Some(s),
                            Err(e) => return fail(e),
                        }
                    }
                    let Some(st) = &state else { return };
                    let result = netns::open(&ns)
                        .and_then(|file| netns::enter(&file))
                        .and_then(|()| work(st, job))
                        .with_context(|| format!("in namespace `{ns}`"));
                    if let Some(done) = done {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Err(e) = result {
                        fail(e);
                    }
                }
            });
        }
    });
    errors
        .into_inner()
        .unwrap_or_else(|_| vec![anyhow!("a namespace worker panicked")])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(per_thread: usize, stop_on_error: bool, done: Option<&AtomicUsize>) -> Options<'_> {
        Options {
            per_thread,
            stop_on_error,
            done,
        }
    }

    /// Jobs for namespaces that do not exist: each fails at `open`, as any
    /// user can see without root.
    fn absent(n: usize) -> Vec<(String, usize)> {
        (0..n)
            .map(|i| (format!("gl-pool-absent-{}-{i}", std::process::id()), i))
            .collect()
    }

    #[test]
    fn every_job_is_counted_and_every_failure_names_its_namespace() {
        let done = AtomicUsize::new(0);
        let errors = pool(
            absent(3),
            options(1, false, Some(&done)),
            || Ok(()),
            |(), _| Ok(()),
        );
        assert_eq!(done.load(Ordering::Relaxed), 3);
        let mut shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        shown.sort();
        let want: Vec<String> = absent(3)
            .into_iter()
            .map(|(ns, _)| format!("in namespace `{ns}`"))
            .collect();
        assert_eq!(shown, want);
    }

    #[test]
    fn stop_on_error_takes_no_job_after_the_first_failure() {
        let done = AtomicUsize::new(0);
        // One thread (three jobs per thread), so "after" is well defined.
        let errors = pool(
            absent(3),
            options(3, true, Some(&done)),
            || Ok(()),
            |(), _| Ok(()),
        );
        assert_eq!((errors.len(), done.load(Ordering::Relaxed)), (1, 1));
        // A pool without a counter (teardown's) touches no other counter.
        assert_eq!(
            pool(
                absent(2),
                options(1, false, None),
                || Ok(()),
                |(), _| Ok(())
            )
            .len(),
            2
        );
        assert_eq!(done.load(Ordering::Relaxed), 1);
    }
}
