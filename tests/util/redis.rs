//! A real `redis-server` for one test: `oneloop_remote::testing::RedisServer`, started on a
//! free loopback port, checked to be the process the test started, killed and restarted
//! for fault tests, and gone when dropped. Where `redis-server` is not installed, `start`
//! says SKIPPED and the test returns (`tests/setup` installs it).

#[allow(unused_imports)]
pub use oneloop_remote::testing::RedisServer;
