//! A rayon thread pool as an [`Executor`], so `run_in_executor` can offload onto rayon.
//!
//! rayon owns its threads and queues; this adapter only hands each job to `spawn`, where
//! `Job::run` catches a panic before rayon would see it.

use std::fmt;
use std::sync::Arc;

use crate::{Executor, Job, Rejected};

/// Runs jobs on a rayon pool (its global pool, or one of yours).
///
/// # Examples
///
/// ```
/// use oneloop_pool::{Executor, JobBuilder, RayonExecutor};
///
/// let rayon = RayonExecutor::global();
/// let (job, handle) = JobBuilder::new().build(|| 21 * 2);
/// rayon.execute(job).unwrap();
/// assert_eq!(handle.join(), Ok(42));
/// ```
#[derive(Clone)]
pub struct RayonExecutor {
    pool: Option<Arc<::rayon::ThreadPool>>,
}

impl RayonExecutor {
    /// Runs jobs on rayon's global pool.
    pub fn global() -> Self {
        RayonExecutor { pool: None }
    }

    /// Runs jobs on `pool`.
    pub fn new(pool: Arc<::rayon::ThreadPool>) -> Self {
        RayonExecutor { pool: Some(pool) }
    }
}

impl Executor for RayonExecutor {
    fn execute(&self, job: Job) -> Result<(), Rejected> {
        match &self.pool {
            Some(pool) => pool.spawn(move || job.run()),
            None => ::rayon::spawn(move || job.run()),
        }
        Ok(())
    }
}

impl fmt::Debug for RayonExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RayonExecutor")
            .field("global", &self.pool.is_none())
            .finish()
    }
}
