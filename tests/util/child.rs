//! The `teardown-child` binary (`tests/bin/teardown_child.rs`), run with arguments and its
//! standard error read back: each case of a runtime, pool or handle dropped in a
//! thread-local runs in a process of its own, so an abort is a failed assertion, not a dead
//! test binary.

use std::process::{Command, Output};

use super::hang_guard;

/// What a child process did.
pub struct Child {
    pub args: String,
    pub success: bool,
    pub stderr: String,
}

impl Child {
    /// Runs `teardown-child` with `args`, under the hang guard.
    pub fn run(args: &[&str]) -> Child {
        let owned: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let output: Output = hang_guard(move || {
            Command::new(env!("CARGO_BIN_EXE_teardown-child"))
                .args(&owned)
                // The environment must not turn debug mode on behind the test's back.
                .env_remove("ONELOOP_DEBUG")
                .env_remove("ONELOOP_TRACE")
                .output()
                .expect("start teardown-child")
        });
        Child {
            args: args.join(" "),
            success: output.status.success(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// How many times `needle` appears in its standard error.
    pub fn count(&self, needle: &str) -> usize {
        self.stderr.matches(needle).count()
    }

    /// It exited normally, after `main` returned, with nothing leaked to report.
    pub fn assert_clean_exit(&self) {
        assert!(
            self.success,
            "`teardown-child {}` failed:\n{}",
            self.args, self.stderr
        );
        assert!(
            !self.stderr.contains("Thread Local Storage"),
            "`teardown-child {}`:\n{}",
            self.args,
            self.stderr
        );
        assert_eq!(
            self.count("main returns"),
            1,
            "`teardown-child {}`:\n{}",
            self.args,
            self.stderr
        );
        assert_eq!(
            self.count("OL009"),
            0,
            "`teardown-child {}` reported a leak:\n{}",
            self.args,
            self.stderr
        );
    }

    /// It said `dropped: {what}` exactly once.
    pub fn assert_dropped(&self, what: &str) {
        assert_eq!(
            self.count(&format!("dropped: {what}")),
            1,
            "`teardown-child {}`: expected `dropped: {what}` once:\n{}",
            self.args,
            self.stderr
        );
    }
}
