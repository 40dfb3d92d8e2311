//! `task::Builder`: spawn a task with a name, so debug reports can say which one it was.

use std::future::Future;
use std::panic::Location;

use super::JoinHandle;
use crate::context;

/// Configures a task before spawning it.
///
/// # Examples
///
/// ```
/// oneloop::Runtime::new().block_on(async {
///     let handle = oneloop::task::Builder::new()
///         .name("handler")
///         .spawn(async { "done" });
///     assert_eq!(handle.await, Ok("done"));
/// });
/// ```
#[derive(Debug, Default, Clone)]
pub struct Builder {
    name: Option<Box<str>>,
}

impl Builder {
    /// A builder for an unnamed task.
    pub fn new() -> Self {
        Builder::default()
    }

    /// Names the task; the name appears in every debug report about it.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Spawns the task on the current runtime. See [`spawn`](crate::spawn).
    ///
    /// # Panics
    ///
    /// Outside a runtime.
    #[track_caller]
    pub fn spawn<F>(self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let core = context::current("oneloop::task::Builder::spawn");
        core.spawn(future, self.name, Location::caller())
    }

    /// Spawns the task on `runtime`, which need not be running yet.
    #[track_caller]
    pub fn spawn_on<F>(self, future: F, runtime: &crate::Runtime) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        runtime.core().spawn(future, self.name, Location::caller())
    }
}
