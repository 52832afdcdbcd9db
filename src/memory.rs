//! The allocator's side of peak memory: the `essentry-sync` binary allocates with mimalloc,
//! which keeps freed pages in the heap of the thread that owns them (and returns fully free ones
//! to the OS only after a delay). A 100,000-user cycle frees tens of MB at once between its
//! phases (the Graph read's response bodies, then the snapshot and the stored users), and the
//! next phase, running on another thread, would allocate beside them instead of in them: the
//! process then peaks at the sum of its phases, not at the largest one.
//!
//! While a sync cycle runs it holds a [`PromptRelease`], which makes mimalloc return free pages
//! at once (the purge delay set to 0, back to mimalloc's default when the last cycle ends: a
//! process-wide 0 cost the SCIM endpoint about a fifth of its throughput, every small free then
//! being a system call); [`release_freed`] (called by a sync cycle between its phases)
//! gives back what the calling thread's heap holds free. Both only talk to mimalloc: when
//! another allocator is the global one (the tests), mimalloc's own heaps are empty and these
//! //! calls do nothing. The only `unsafe` code of the crate is here: three FFI calls with no
//! arguments that point anywhere.

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (v2 and v3 alike; libmimalloc-sys names
/// no constant for it): milliseconds before freed memory is returned to the OS (10 by default).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc's own purge delay, in milliseconds, restored when no cycle runs.
const DEFAULT_PURGE_DELAY: std::ffi::c_long = 10;

/// How many [`PromptRelease`]s are held.
static PROMPT_HOLDERS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

fn set_purge_delay(ms: std::ffi::c_long) {
    // SAFETY: sets a process-wide integer option by value; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms) };
}

/// Held while a sync cycle runs: mimalloc returns memory to the OS as soon as it is free,
/// instead of 10 ms later (by then the cycle's next phase has allocated beside it). Cycles of
/// several integrations may overlap: the delay is restored when the last one drops its hold.
#[must_use = "memory is returned promptly only while the hold is alive"]
pub struct PromptRelease(());

impl PromptRelease {
    pub fn hold() -> Self {
        let mut holders = PROMPT_HOLDERS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *holders == 0 {
            set_purge_delay(0);
        }
        *holders += 1;
        Self(())
    }
}

impl Drop for PromptRelease {
    fn drop(&mut self) {
        let mut holders = PROMPT_HOLDERS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *holders = holders.saturating_sub(1);
        if *holders == 0 {
            set_purge_delay(DEFAULT_PURGE_DELAY);
        }
    }
}

/// Returns the free pages of the calling thread's mimalloc heap (and any that other threads freed
/// into it) to the OS, and, on glibc, the free memory of every malloc arena: SQLite allocates
/// with the C library's malloc on its connections' own threads (page caches, sorters, in-memory
/// temporary tables), and glibc keeps what it frees there. Cheap next to a cycle's phases.
pub fn release_freed() {
    // SAFETY: takes no pointers; collecting the calling thread's heap is always allowed.
    unsafe { libmimalloc_sys::mi_collect(true) };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes a size by value and only releases memory malloc holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
