//! Integration tests live in this package's test targets. The library holds what a test
//! and a helper binary must share: the functions remote workers run
//! ([`remote_fns`]), registered under the same keys in the test binaries and in
//! `remote-worker`.

pub mod remote_fns;
