//! What `up` tells a person while it works: a progress line on a terminal
//! for large labs, and phase timings when GRELAB_TIMINGS is set.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A progress line on a terminal for large labs (quiet otherwise): the
/// phase, namespaces done, rate and time left.
pub(crate) struct Progress {
    /// Namespace jobs finished in the current phase: the pool counts them.
    done: Arc<AtomicUsize>,
    shared: Option<Arc<(Mutex<&'static str>, AtomicBool)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub(crate) fn new(total: usize) -> Progress {
        use std::io::IsTerminal;
        let done = Arc::new(AtomicUsize::new(0));
        if total < 50 || !std::io::stderr().is_terminal() {
            return Progress {
                done,
                shared: None,
                thread: None,
            };
        }
        let shared = Arc::new((Mutex::new("namespaces"), AtomicBool::new(false)));
        let (s, counter) = (shared.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            let mut phase_start = (String::new(), Instant::now());
            while !s.1.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let phase = s.0.lock().map_or("", |p| *p);
                if phase_start.0 != phase {
                    phase_start = (phase.to_owned(), Instant::now());
                }
                let done = counter.load(Ordering::Relaxed).min(total);
                let secs = phase_start.1.elapsed().as_secs_f64();
                let rate = done as f64 / secs.max(1e-3);
                let eta = if done > 0 {
                    (total - done) as f64 / rate
                } else {
                    0.0
                };
                eprint!(
                    "\r\x1b[K  {phase}: {done}/{total} namespaces ({rate:.0}/s, {eta:.1} s left)"
                );
            }
            eprint!("\r\x1b[K");
        });
        Progress {
            done,
            shared: Some(shared),
            thread: Some(thread),
        }
    }

    /// The counter of namespace jobs done, for `sys::pool`.
    pub(crate) fn done(&self) -> &AtomicUsize {
        &self.done
    }

    pub(crate) fn phase(&self, name: &'static str) {
        self.done.store(0, Ordering::Relaxed);
        if let Some(s) = &self.shared
            && let Ok(mut p) = s.0.lock()
        {
            *p = name;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            s.1.store(true, Ordering::Relaxed);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Prints how long each phase took when GRELAB_TIMINGS is set: where the
/// time of a large `up` goes.
pub(crate) struct Timings(Option<Instant>);

impl Timings {
    pub(crate) fn new() -> Self {
        Timings(std::env::var_os("GRELAB_TIMINGS").map(|_| Instant::now()))
    }

    pub(crate) fn lap(&mut self, what: &str) {
        if let Some(t) = &mut self.0 {
            eprintln!("timing: {what}: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
            *t = Instant::now();
        }
    }
}
