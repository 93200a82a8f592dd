//! The C heap's upkeep returns what glibc keeps after a burst, and only then. A binary of its
//! own: it measures the process's resident memory, which other tests' threads would move.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use polaris_bridge::c_heap::CHeap;

/// Resident memory of this process, bytes (VmRSS).
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn a_burst_of_freed_c_heap_goes_back_to_the_system_once() {
    const PIECES: usize = 16 * 1024;
    const PIECE: usize = 2048;
    let mut heap = CHeap::default();
    heap.upkeep();
    let trims_before = heap.trims();

    // 32 MiB in small pieces, as librdkafka's buffers are, touched; one more allocation
    // above them keeps glibc's free() from giving the space back by itself.
    let pieces: Vec<*mut libc::c_void> = (0..PIECES)
        .map(|_| {
            // SAFETY: plain malloc; the pointer is checked and written within its size.
            unsafe {
                let p = libc::malloc(PIECE);
                assert!(!p.is_null());
                std::ptr::write_bytes(p.cast::<u8>(), 0xA5, PIECE);
                p
            }
        })
        .collect();
    // SAFETY: as above.
    let fence = unsafe { libc::malloc(PIECE) };
    assert!(!fence.is_null());
    let grown = rss();
    for p in pieces {
        // SAFETY: each pointer came from malloc above and is freed once.
        unsafe { libc::free(p) };
    }
    let after_free = rss();
    assert!(
        after_free + (16 << 20) > grown,
        "glibc kept the freed pieces ({grown} -> {after_free} bytes resident): nothing to show"
    );

    heap.upkeep();
    let trimmed = rss();
    assert_eq!(heap.trims(), trims_before + 1, "one trim after the burst");
    assert!(
        trimmed + (16 << 20) < after_free,
        "the trim returned the freed 32 MiB: {after_free} -> {trimmed} bytes resident"
    );

    // Nothing new was freed: the next upkeep leaves the heap alone.
    heap.upkeep();
    assert_eq!(
        heap.trims(),
        trims_before + 1,
        "no second trim without a new burst"
    );
    // SAFETY: from malloc above, freed once.
    unsafe { libc::free(fence) };
}
