//! What `/proc` says about a thread blocked in the kernel: which system call, on which file
//! descriptor, and whether it masks the capture signal. Read by the watchdog (`capture.rs`)
//! before it decides whether it may signal the thread at all.

/// Whether the thread has the capture signal masked (`SigBlk` in its status).
pub(super) fn signal_blocked(task: &str, signal: libc::c_int) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("{task}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigBlk:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

/// Calls whose first argument is the file descriptor they wait on.
pub(super) fn takes_fd(name: &str) -> bool {
    !matches!(
        name,
        "poll"
            | "ppoll"
            | "select"
            | "pselect6"
            | "nanosleep"
            | "clock_nanosleep"
            | "futex"
            | "wait4"
            | "openat"
    )
}

/// The common blocking calls' names (numbers differ between architectures).
pub(super) fn syscall_name(number: libc::c_long) -> Option<String> {
    let mut table: Vec<(libc::c_long, &str)> = vec![
        (libc::SYS_read, "read"),
        (libc::SYS_write, "write"),
        (libc::SYS_readv, "readv"),
        (libc::SYS_writev, "writev"),
        (libc::SYS_pread64, "pread64"),
        (libc::SYS_pwrite64, "pwrite64"),
        (libc::SYS_recvfrom, "recvfrom"),
        (libc::SYS_sendto, "sendto"),
        (libc::SYS_recvmsg, "recvmsg"),
        (libc::SYS_sendmsg, "sendmsg"),
        (libc::SYS_accept, "accept"),
        (libc::SYS_accept4, "accept4"),
        (libc::SYS_connect, "connect"),
        (libc::SYS_ppoll, "ppoll"),
        (libc::SYS_pselect6, "pselect6"),
        (libc::SYS_epoll_pwait, "epoll_pwait"),
        (libc::SYS_nanosleep, "nanosleep"),
        (libc::SYS_clock_nanosleep, "clock_nanosleep"),
        (libc::SYS_futex, "futex"),
        (libc::SYS_wait4, "wait4"),
        (libc::SYS_openat, "openat"),
        (libc::SYS_fsync, "fsync"),
        (libc::SYS_flock, "flock"),
    ];
    #[cfg(target_arch = "x86_64")]
    table.extend([
        (libc::SYS_poll, "poll"),
        (libc::SYS_select, "select"),
        (libc::SYS_epoll_wait, "epoll_wait"),
    ]);
    table
        .into_iter()
        .find(|&(n, _)| n == number)
        .map(|(_, name)| name.to_owned())
}
