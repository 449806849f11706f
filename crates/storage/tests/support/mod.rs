//! Helpers shared by the test binaries that make the disk refuse writes.

/// Lowers (or raises) this process's RLIMIT_FSIZE: writes past `bytes`
/// fail with EFBIG (SIGXFSZ is ignored so they fail instead of killing the
/// process). The limit is the whole process's, so a binary using this
/// holds one test.
pub fn set_file_size_limit(bytes: u64) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscalls on this process's own limits and signal disposition.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0, "setrlimit");
    }
}
