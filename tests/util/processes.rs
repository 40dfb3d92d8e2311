//! What the process-pool tests look at in `/proc`: this process's children (zombies
//! included), a process's state, this process's open descriptors; and running a test
//! alone in a child process, where the other tests' workers are not children too.

use std::collections::HashSet;

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
