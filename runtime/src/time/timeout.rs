//! `timeout`: give a future a deadline; on expiry it is dropped and `Elapsed` returned.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;

use super::sleep::{Sleep, far_or, sleep_until};

/// Runs `future` for at most `duration` (asyncio's `asyncio.timeout`, tokio's `timeout`).
///
/// Returns `Ok(output)` if the future finishes first. Otherwise the future is **dropped**
/// (so whatever it held is released and it never resumes) and `Err(Elapsed)` is returned.
/// If both are ready on the same poll, the future's output wins.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use oneloop::time::{sleep, timeout};
///
/// oneloop::Runtime::new().block_on(async {
///     let slow = timeout(Duration::from_millis(10), sleep(Duration::from_secs(60))).await;
///     assert!(slow.is_err());
///     let fast = timeout(Duration::from_secs(60), async { 7 }).await;
///     assert_eq!(fast, Ok(7));
/// });
/// ```
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    timeout_at(far_or(Instant::now().checked_add(duration)), future)
}

/// Like [`timeout`], with an absolute deadline.
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout {
        future: Some(future),
        sleep: sleep_until(deadline),
    }
}

/// The error of a [`timeout`] whose deadline passed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

pin_project! {
    /// The future returned by [`timeout`] and [`timeout_at`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless awaited"]
    pub struct Timeout<F> {
        // `None` once the deadline passed and the future was dropped.
        #[pin]
        future: Option<F>,
        sleep: Sleep,
    }
}

impl<F> Timeout<F> {
    /// The deadline.
    pub fn deadline(&self) -> Instant {
        self.sleep.deadline()
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let future = this
            .future
            .as_mut()
            .as_pin_mut()
            .expect("oneloop: Timeout polled after it completed");
        if let Poll::Ready(output) = future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match Pin::new(this.sleep).poll(cx) {
            Poll::Ready(()) => {
                this.future.set(None);
                Poll::Ready(Err(Elapsed(())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
