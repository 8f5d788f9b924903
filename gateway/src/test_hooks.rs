//! Crash points for the reliability tests. Built only with the
//! `crash-points` feature; even then inert unless `PARLEY_TEST_CRASH_AT`
//! names a point (`<point>` or `<point>:<n>` for the n-th pass). At that
//! point the process aborts on the spot — no cleanup, no flush, as SIGKILL
//! would — so a test can kill the gateway between any two steps that have
//! state in between, deterministically.

/// Aborts the process here if the test asked for it.
#[inline]
pub fn crash_point(name: &str) {
    #[cfg(feature = "crash-points")]
    armed::hit(name);
    #[cfg(not(feature = "crash-points"))]
    let _ = name;
}

#[cfg(feature = "crash-points")]
mod armed {
    use std::sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    };

    static TARGET: OnceLock<Option<(String, u32)>> = OnceLock::new();
    static PASSES: AtomicU32 = AtomicU32::new(0);

    pub fn hit(name: &str) {
        let target = TARGET.get_or_init(|| {
            let raw = std::env::var("PARLEY_TEST_CRASH_AT").ok()?;
            let (point, n) = match raw.rsplit_once(':') {
                Some((point, n)) if n.parse::<u32>().is_ok() => (point.to_owned(), n.parse().ok()?),
                _ => (raw, 1),
            };
            Some((point, n.max(1)))
        });
        if let Some((point, n)) = target
            && point == name
            && PASSES.fetch_add(1, Ordering::SeqCst) + 1 == *n
        {
            eprintln!("crash point {name} reached: aborting (PARLEY_TEST_CRASH_AT)");
            std::process::abort();
        }
    }
}
