//! mimalloc's settings for the binaries that link it as their global allocator (the
//! `polaris-bridge` binary and `polaris-bridge-bench`, whose storage and decode phases must
//! allocate as the bridge does). Built with the default `mimalloc` feature.

/// mimalloc's `mi_option_purge_delay`: its place in the option enum of mimalloc v3 (what the
/// sys crate builds by default), which the crate does not name; the test below checks it
/// against the option's and its neighbours' defaults.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The purge delay the bridge gives mimalloc, ms.
pub const MIMALLOC_PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Has mimalloc return freed memory to the system after 10 ms instead of a second (v3's
/// default), unless `MIMALLOC_PURGE_DELAY` says otherwise: a soak at 20,000 events/s held
/// 96-110 MiB over minutes 2-5 against 117-129 with the default; side by side at full speed,
/// 0.94-0.96x the events/s end to end and 1.10-1.11x the webhook deliveries/s, at 74-81
/// against 96-97 MiB peak RSS (BENCHMARKS.md).
pub fn purge_freed_memory_soon() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: setting an option is a plain store in mimalloc's option table, allowed at
        // any time; the purge delay is read when memory is freed.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, MIMALLOC_PURGE_DELAY_MS) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An option's current value.
    fn option(option: libmimalloc_sys::mi_option_t) -> std::ffi::c_long {
        // SAFETY: reading an option is a plain load from mimalloc's option table.
        unsafe { libmimalloc_sys::mi_option_get(option) }
    }

    #[test]
    fn the_purge_delay_is_the_option_set_and_becomes_ten_ms() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // the environment decides; nothing of ours to check
        }
        // The option and its neighbours at their defaults in mimalloc v3:
        // deprecated_eager_commit_delay 1, purge_delay 1000 ms, use_numa_nodes 0. A
        // reordered enum fails here.
        assert_eq!(
            (
                option(MI_OPTION_PURGE_DELAY - 1),
                option(MI_OPTION_PURGE_DELAY),
                option(MI_OPTION_PURGE_DELAY + 1)
            ),
            (1, 1000, 0)
        );
        purge_freed_memory_soon();
        assert_eq!(option(MI_OPTION_PURGE_DELAY), MIMALLOC_PURGE_DELAY_MS);
    }
}
