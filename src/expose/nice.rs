//! Scrapes yield to ingest. A scrape of a large store keeps every render thread busy for tens
//! of milliseconds, and back-to-back scrapers keep them busy for good; at equal priority the
//! scheduler would give the receive threads only their share among them, and the kernel
//! drops what does not fit the receive buffer meanwhile. Render threads therefore run at a
//! lower priority (a higher nice value): they take every cycle ingest leaves, and wait when
//! ingest needs the core.

/// The nice value of render threads: at 10 the scheduler weighs a render thread about a
/// tenth of a receive thread when both want the same core.
pub const RENDER_NICE: i32 = 10;

/// Lowers the calling thread's priority to [`RENDER_NICE`] (Linux keeps the nice value per
/// thread). Best effort: on failure the thread keeps its priority, and the scrape its speed.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `gettid` has no preconditions and cannot fail.
        let tid = unsafe { libc::gettid() };
        // SAFETY: plain integers; affects only this thread (Linux/NPTL).
        let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, RENDER_NICE) };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn only_the_calling_thread_is_lowered() {
        let nice_of = |tid: libc::pid_t| {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
            // Field 19 is the nice value; fields after the `)` that closes the name.
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            after.split(' ').nth(16).unwrap().parse::<i32>().unwrap()
        };
        // SAFETY: as in `lower_this_thread`.
        let me = unsafe { libc::gettid() };
        let before = nice_of(me);
        let (lowered, tid) = std::thread::spawn(move || {
            super::lower_this_thread();
            // SAFETY: as above.
            let tid = unsafe { libc::gettid() };
            (nice_of(tid), tid)
        })
        .join()
        .unwrap();
        assert_ne!(tid, me);
        assert_eq!(lowered, super::RENDER_NICE.max(before));
        assert_eq!(nice_of(me), before);
    }
}
