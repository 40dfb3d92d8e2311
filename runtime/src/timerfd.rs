//! Sub-millisecond timer wake-ups on Linux.
//!
//! `epoll_wait` takes its timeout in whole milliseconds, and mio rounds up so a sleep never
//! ends early. A timer due in 0.3 ms would then wake the loop 0.7 ms late, and a loop
//! woken early by something else (a finished job, a socket) meets such remainders all the
//! time. So on Linux the loop arms a `timerfd` with the exact remaining time before it
//! sleeps, registered with the reactor like any source: the timerfd's event ends the sleep
//! on time (within the kernel's timer slack, 50 µs), and the rounded-up epoll timeout stays
//! as a backstop. Elsewhere the rounded timeout alone is used.

#[cfg(target_os = "linux")]
mod imp {
    use std::cell::Cell;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Duration;

    use mio::unix::SourceFd;
    use mio::{Interest, Registry, Token};

    /// A non-blocking, monotonic timerfd registered with the reactor.
    pub(crate) struct TimerFd {
        fd: OwnedFd,
        /// Armed and not yet seen to fire.
        armed: Cell<bool>,
    }

    impl TimerFd {
        pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<TimerFd> {
            // SAFETY: timerfd_create takes no pointers; the flags are valid constants.
            let raw = unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                )
            };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a file descriptor we just created and own alone.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
            Ok(TimerFd {
                fd,
                armed: Cell::new(false),
            })
        }

        /// Fires once, `after` from now (`None` disarms it).
        pub(crate) fn set(&self, after: Option<Duration>) {
            if after.is_none() && !self.armed.get() {
                return;
            }
            // A zero it_value disarms; so a zero duration is armed as 1 ns.
            let value = after.map_or(
                libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                |d| {
                    let d = d.max(Duration::from_nanos(1));
                    libc::timespec {
                        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
                        // Below 10^9: fits a c_long of any width.
                        tv_nsec: d.subsec_nanos() as libc::c_long,
                    }
                },
            );
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: value,
            };
            // SAFETY: the fd is ours and open; `spec` is a valid itimerspec on the stack and
            // the old-value pointer may be null.
            let result = unsafe {
                libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut())
            };
            // It cannot fail for an open timerfd and a valid spec; if it did, the rounded
            // epoll timeout still ends the sleep.
            self.armed.set(result == 0 && after.is_some());
        }

        /// Its event came: read the expiry count so the fd is quiet again.
        pub(crate) fn fired(&self) {
            self.armed.set(false);
            let mut count = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a buffer of 8 bytes; the fd is ours and
            // non-blocking, so this returns at once (EAGAIN if the expiry was already read).
            let _ =
                unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::time::Duration;

    use mio::{Registry, Token};

    /// Elsewhere: no timerfd; the rounded-up poll timeout does the job.
    pub(crate) struct TimerFd;

    impl TimerFd {
        pub(crate) fn new(_registry: &Registry, _token: Token) -> io::Result<TimerFd> {
            Err(io::Error::from(io::ErrorKind::Unsupported))
        }
        pub(crate) fn set(&self, _after: Option<Duration>) {}
        pub(crate) fn fired(&self) {}
    }
}

pub(crate) use imp::TimerFd;
