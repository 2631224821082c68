//! `redis-server` for the tests: started on a free loopback port (or a given one, to come
//! back where a killed one was), nothing persisted; scripts/redis.sh installs it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{Process, free_port};

/// `redis-server` (its child and port in the [`Process`] it derefs to).
pub struct Server(Process);

impl std::ops::Deref for Server {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.0
    }
}

impl Server {
    /// `redis-server` on a free loopback port, nothing persisted.
    pub fn start(port: Option<u16>) -> Server {
        let port = port.unwrap_or_else(free_port);
        let mut command = Command::new("redis-server");
        command
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null());
        let server =
            Server(Process::start(command, port, "redis-server (scripts/redis.sh installs it)"));
        // Taking connections is not yet answering commands.
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.conn().is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn conn(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.port))?.get_connection()
    }
}

impl Server {
    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}
