//! The C allocator's heap (glibc's `malloc`, which librdkafka and the other C libraries use
//! whatever Rust's global allocator is): measured for [`m::C_HEAP_BYTES`], and trimmed after
//! bursts.

use metrics::gauge;

use crate::metrics as m;

/// The C allocator's heap: measured, and trimmed after bursts.
///
/// librdkafka allocates its fetch buffers and queued messages with glibc's `malloc`. When
/// the source falls behind for a moment, its prefetch queue fills up to
/// `source.prefetch_kbytes`, and glibc keeps what is freed afterwards in its arenas: a soak
/// run held 16 MiB of C heap (4 MiB before such a moment) to its end (BENCHMARKS.md).
#[derive(Debug, Default)]
pub struct CHeap {
    /// Free bytes in the arenas after the last trim (their pages already returned): only
    /// free memory above this is new.
    free_after_trim: usize,
    /// Trims so far.
    trims: u64,
}

/// New free bytes in the C heap above which [`CHeap::upkeep`] returns them to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const C_HEAP_TRIM_SLACK: usize = 8 << 20;

impl CHeap {
    /// Sets [`m::C_HEAP_BYTES`] from glibc's `mallinfo2`, after returning the arenas' free
    /// pages to the system (`malloc_trim`) when more than 8 MiB (`C_HEAP_TRIM_SLACK`) were
    /// freed since the last trim. Both walk every arena under its lock: microseconds to a
    /// millisecond, every 5 s.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    pub fn upkeep(&mut self) {
        // SAFETY: mallinfo2 takes no arguments and returns a plain struct by value; glibc
        // allows it on any thread at any time.
        let mut info = unsafe { libc::mallinfo2() };
        // Free memory reused since the trim needs no second one.
        self.free_after_trim = self.free_after_trim.min(info.fordblks);
        if info.fordblks > self.free_after_trim + C_HEAP_TRIM_SLACK {
            // SAFETY: malloc_trim only releases free pages and is thread-safe in glibc; a pad
            // of 0 keeps nothing in reserve.
            unsafe { libc::malloc_trim(0) };
            tracing::debug!(
                free_bytes = info.fordblks,
                "returned the C heap's free pages"
            );
            // SAFETY: as above.
            info = unsafe { libc::mallinfo2() };
            self.free_after_trim = info.fordblks;
            self.trims += 1;
        }
        gauge!(m::C_HEAP_BYTES).set((info.uordblks + info.hblkhd) as f64);
    }

    /// Trims so far.
    pub fn trims(&self) -> u64 {
        self.trims
    }

    /// Without glibc there is no `mallinfo2`: nothing trimmed, and the gauge not exported.
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    pub fn upkeep(&mut self) {}
}
