//! What the process-pool tests look at in `/proc`: this process's children (zombies
//! included), a process's state, this process's open descriptors; and running a test
//! alone in a child process, where the other tests' workers are not children too; and
//! marker files, by which a worker and a test wait on each other without a clock.

use std::collections::HashSet;
use std::path::PathBuf;

/// The pids of this process's children that are still around (zombies included).
pub fn children() -> HashSet<u32> {
    let mut pids = HashSet::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        pids.extend(
            list.split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok()),
        );
    }
    pids
}

/// The pids of process `pid`'s children.
pub fn children_of(pid: u32) -> HashSet<u32> {
    let mut pids = HashSet::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        pids.extend(
            list.split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok()),
        );
    }
    pids
}

/// The state letter of process `pid` (`Z` for a zombie, `T` when stopped), or `None`
/// once it is gone.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses and may hold spaces.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// How many descriptors this process has open (the directory handle `read_dir` holds is
/// counted too, the same way every time).
pub fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Runs the test `name` again, alone, in a child process, and returns true: the caller
/// returns then. In that child, returns false: the caller runs the test's body.
pub fn ran_alone_in_child(name: &str) -> bool {
    if super::in_child() {
        return false;
    }
    assert!(
        super::run_test_in_child(name, &[]),
        "{name} failed in its child process"
    );
    true
}

/// Runs the test `name` alone in a child process (as [`ran_alone_in_child`]) with its
/// stderr in a pipe: read back and returned when `read`, else never read at all (a stderr
/// that does not keep up: the child's writes to it block once the pipe is full). Asserts
/// the child passed. `None` in the child itself: the caller runs the test's body.
pub fn child_stderr(name: &str, read: bool) -> Option<String> {
    if super::in_child() {
        return None;
    }
    let name = name.to_owned();
    Some(super::hang_guard(move || {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &name, "--quiet"])
            .env("ONELOOP_TEST_CHILD", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let mut text = String::new();
        if read {
            std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        }
        let status = child.wait().unwrap();
        drop(stderr);
        assert!(
            status.success(),
            "{name} failed in its child process:\n{text}"
        );
        text
    }))
}

/// A folder of marker files for one test, so a worker and the test can wait on each other
/// by what happened (a file appears), never by a clock. Removed when dropped.
pub struct Markers(PathBuf);

impl Markers {
    pub fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("oneloop-test-markers-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Markers(dir)
    }

    pub fn dir(&self) -> String {
        self.0.to_str().unwrap().to_owned()
    }

    pub fn set(&self, name: &str) {
        std::fs::write(self.0.join(name), b"").unwrap();
    }

    /// True once `name` is there.
    pub fn is_set(&self, name: &str) -> bool {
        self.0.join(name).exists()
    }

    pub fn wait_for(&self, name: &str) {
        let path = self.0.join(name);
        super::wait_until(|| path.exists());
    }

    /// The pid a worker wrote into `dir/started`, once it has.
    pub fn started_pid(&self) -> u32 {
        let path = self.0.join("started");
        let mut text = String::new();
        super::wait_until(|| {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            !text.is_empty()
        });
        text.parse().unwrap()
    }
}

impl Drop for Markers {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Marks `dir/started` with this (worker) process's pid: what `Markers::started_pid` and
/// `Markers::wait_for("started")` wait for.
pub fn mark_started(dir: &str) {
    std::fs::write(
        std::path::Path::new(dir).join("started"),
        std::process::id().to_string(),
    )
    .unwrap();
}
