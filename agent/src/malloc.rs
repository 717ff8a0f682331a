//! glibc malloc settings for the long-running agent (`owlet run`).
//!
//! Why: measured with 10,000 checks (`bench/probe/run.sh`), glibc's defaults
//! cost the agent ~10 MB more than its live heap:
//! * the dynamic mmap threshold: freeing one large block (the TOML lexer's
//!   token buffer, 15.6 MB for a 1 MB config) raises the mmap threshold to
//!   that size and the trim threshold to twice it (31 MB), so the heap is
//!   never trimmed again. Fixed thresholds turn that adjustment off. They
//!   are 4 MiB, not glibc's starting 128 KiB: batches (up to `batch.max_bytes`,
//!   1 MiB), their event vectors and zstd's per-message contexts are 1-3 MB,
//!   and each one mmapped and unmapped per batch cost the pipeline benchmark
//!   ~0.4 CPU s per million events in page faults (with 4 MiB: no more than
//!   glibc's defaults);
//! * the configuration's parse tree is freed once the config is loaded, but
//!   its pages stay with the process: [`release_free_memory`] hands them
//!   back right after the load;
//! * one arena per thread that ever allocated (up to 8 per core): two
//!   arenas keep the check runs' transient buffers from spreading over the
//!   tokio workers' and the blocking pool's own.
//!
//! An operator's own `MALLOC_ARENA_MAX` / `MALLOC_MMAP_THRESHOLD_` /
//! `MALLOC_TRIM_THRESHOLD_` wins: a setting given in the environment is not
//! overridden.
//!
//! Must never: run after other threads start (mallopt is not meant to race
//! allocations), or do anything but tune the allocator.
#![allow(unsafe_code)]

/// Blocks at least this large are mmapped (and unmapped when freed).
const MMAP_THRESHOLD: libc::c_int = 4 * 1024 * 1024;

/// Free memory at the top of the heap beyond this goes back at once.
const TRIM_THRESHOLD: libc::c_int = 4 * 1024 * 1024;

/// Arenas: two, so the async workers and the spool's blocking threads do not
/// all contend on one (one arena cost ~10 % of pipeline throughput).
const ARENA_MAX: libc::c_int = 2;

/// Applies the settings. Call first thing in `owlet run`, while the process
/// has one thread.
pub fn tune() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only changes allocator parameters; it takes two
        // integers, touches no memory of ours, and is called before any other
        // thread exists. A refusal (return 0) leaves the default in place.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    }
    if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
        // SAFETY: as above.
        unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) };
    }
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: as above.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX) };
    }
}

/// Returns the free pages of the heap to the system (after the config load,
/// whose parse tree is the largest thing the agent ever frees).
pub fn release_free_memory() {
    // SAFETY: malloc_trim only releases memory malloc holds free; no live
    // allocation moves or changes.
    unsafe { libc::malloc_trim(0) };
}
