//! A real `redis-server` for one test: `oneloop_remote::testing::RedisServer`, started on a
//! free loopback port, checked to be the process the test started, killed and restarted
//! for fault tests, and gone when dropped. Where `redis-server` is not installed, `start`
//! says SKIPPED and the test returns (`tests/setup` installs it).

#[allow(unused_imports)]
pub use oneloop_remote::testing::RedisServer;

/// A connection of the test's own to `url`, whose every step gives up after a few
/// seconds: a test that lost its server fails instead of waiting.
#[allow(dead_code)]
pub fn connect(url: &str) -> redis::Connection {
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
    let client = redis::Client::open(url).expect("a valid URL");
    let con = client.get_connection_with_timeout(LIMIT).expect("connect");
    con.set_read_timeout(Some(LIMIT)).unwrap();
    con.set_write_timeout(Some(LIMIT)).unwrap();
    con
}
