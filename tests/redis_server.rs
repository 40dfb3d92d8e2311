//! The `redis-server` the Redis tests run against (`util/redis.rs`): it answers on its own
//! loopback port, is the process the test started, leaves nothing behind when dropped, and
//! comes back on the same port after a crash. Each test prints SKIPPED and passes where
//! `redis-server` is not installed (`tests/setup` installs it).

mod util;

use redis::Commands;
use util::hang_guard;
use util::processes::{children, process_state};
use util::redis::{RedisServer, connect};

#[test]
fn a_started_server_answers_on_its_own_port_as_the_process_we_started() {
    hang_guard(|| {
        let Some(server) = RedisServer::start() else {
            return;
        };
        assert_eq!(
            server.url(),
            format!("redis://127.0.0.1:{}/", server.port())
        );
        let mut con = connect(&server.url());
        let pong: String = redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG");
        let () = con.set("greeting", "hello").unwrap();
        let greeting: String = con.get("greeting").unwrap();
        assert_eq!(greeting, "hello");
        let info: String = redis::cmd("INFO").arg("server").query(&mut con).unwrap();
        let pid = info
            .lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .map(|pid| pid.trim().parse::<u32>().unwrap());
        assert_eq!(pid, server.pid());
        assert!(children().contains(&server.pid().unwrap()));
    });
}

#[test]
fn a_dropped_server_leaves_no_process_no_folder_and_no_listener() {
    hang_guard(|| {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let pid = server.pid().unwrap();
        let dir = server.dir().to_owned();
        let port = server.port();
        assert_eq!(process_state(pid).map(|state| state != 'Z'), Some(true));
        assert!(dir.is_dir());
        drop(server);
        // Reaped, not a zombie: the pid is gone from /proc.
        assert_eq!(process_state(pid), None);
        assert!(!children().contains(&pid));
        assert!(!dir.exists());
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    });
}

#[test]
fn a_killed_server_restarts_empty_on_the_same_port() {
    hang_guard(|| {
        let Some(mut server) = RedisServer::start() else {
            return;
        };
        let port = server.port();
        let first = server.pid().unwrap();
        let mut before = connect(&server.url());
        let () = before.set("key", "value").unwrap();

        server.kill();
        assert_eq!(server.pid(), None);
        assert_eq!(process_state(first), None);
        // The crash is seen by a client that had a connection...
        assert!(before.get::<_, Option<String>>("key").is_err());
        // ...and by one that tries to connect.
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

        server.restart();
        assert_eq!(server.port(), port);
        let second = server.pid().unwrap();
        assert_ne!(second, first);
        let mut after = connect(&server.url());
        // Nothing was persisted: the new server starts empty.
        let value: Option<String> = after.get("key").unwrap();
        assert_eq!(value, None);
        let () = after.set("key", "again").unwrap();
        assert_eq!(after.get::<_, String>("key").unwrap(), "again");
    });
}
