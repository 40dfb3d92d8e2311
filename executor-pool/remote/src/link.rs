//! One connection to the Redis server, made again after any failure, with a backoff.
//!
//! Every thread of an executor or a worker owns its own `Link`: the `redis` crate's
//! synchronous connection (no hidden runtime), with connect, read and write timeouts so no
//! call can hang on a server that stopped answering. After an I/O error the connection is
//! dropped, not reused (a reply cut in the middle would leave it out of step), and the
//! next use connects again, no sooner than the backoff allows: 50 ms, doubling to 2 s.

use std::time::{Duration, Instant};

use redis::{Client, Connection, RedisError};

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A connection that comes back after failures.
pub(crate) struct Link {
    client: Client,
    connection: Option<Connection>,
    connect_timeout: Duration,
    /// The longest a reply may take: longer than any `BLOCK` this link is used with.
    read_timeout: Duration,
    backoff: Duration,
    /// No connection is tried before this.
    retry_at: Option<Instant>,
    /// Why the last attempt failed.
    last_error: String,
}

impl Link {
    /// A link to `url` (checked now; nothing is connected yet).
    pub(crate) fn new(
        url: &str,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Result<Link, RedisError> {
        Ok(Link {
            client: Client::open(url)?,
            connection: None,
            connect_timeout,
            read_timeout,
            backoff: FIRST_BACKOFF,
            retry_at: None,
            last_error: String::new(),
        })
    }

    /// The connection, made now if there is none and the backoff allows; else why not.
    pub(crate) fn get(&mut self) -> Result<&mut Connection, String> {
        if self.connection.is_none() {
            if let Some(at) = self.retry_at
                && Instant::now() < at
            {
                return Err(self.last_error.clone());
            }
            match self.connect() {
                Ok(connection) => {
                    self.connection = Some(connection);
                    self.backoff = FIRST_BACKOFF;
                    self.retry_at = None;
                }
                Err(error) => {
                    self.last_error = error.to_string();
                    self.retry_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    return Err(self.last_error.clone());
                }
            }
        }
        Ok(self.connection.as_mut().expect("connected above"))
    }

    fn connect(&self) -> Result<Connection, RedisError> {
        let connection = self
            .client
            .get_connection_with_timeout(self.connect_timeout)?;
        connection.set_read_timeout(Some(self.read_timeout))?;
        connection.set_write_timeout(Some(self.read_timeout))?;
        Ok(connection)
    }

    /// Runs `f` on the connection. An error that is not the server's answer (the
    /// connection broke, or timed out) drops the connection: the next use connects again.
    pub(crate) fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, Failure> {
        let connection = self.get().map_err(Failure::Unreachable)?;
        f(connection).map_err(|error| {
            if error.code().is_some() {
                Failure::Server(error)
            } else {
                // The connection broke, or the server stopped answering: the next try
                // waits for the backoff, so a server that accepts but never answers costs
                // one timeout per backoff, not one per command.
                self.last_error = error.to_string();
                self.connection = None;
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Failure::Unreachable(self.last_error.clone())
            }
        })
    }

    /// True while a connection is up (as far as this link knows).
    pub(crate) fn is_connected(&self) -> bool {
        self.connection.is_some()
    }

    /// How long until the backoff allows the next connection attempt (zero if now).
    pub(crate) fn backoff_left(&self) -> Duration {
        self.retry_at
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    }
}

/// Why a command got no answer.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No connection, or it broke: the text says why.
    Unreachable(String),
    /// The server answered with an error (`NOGROUP`, `BUSYGROUP`, a script's...).
    Server(RedisError),
}

impl Failure {
    /// The server's error code, if it answered with one.
    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            Failure::Server(error) => error.code(),
            Failure::Unreachable(_) => None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(why) => f.write_str(why),
            Failure::Server(error) => write!(f, "{error}"),
        }
    }
}
