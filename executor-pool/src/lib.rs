//! oneloop-pool: worker pools for blocking and CPU-heavy closures (placeholder crate
//! root; the pools themselves come with the pool work).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
