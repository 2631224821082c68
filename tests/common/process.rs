//! A server a test starts on a loopback port (a broker, a database): started and waited for
//! until the port takes connections, signalled (SIGSTOP/SIGCONT to stall it), killed when
//! dropped. The brokers' helpers wrap one of these.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct Process {
    pub child: Child,
    pub port: u16,
}

/// A loopback port free at the moment of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Process {
    /// Spawns `command` (`what` names it and its install script in a failure) and waits up
    /// to 10 s for `port` to take a connection.
    pub fn start(mut command: Command, port: u16, what: &str) -> Process {
        let child = command.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
        let process = Process { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{what} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        process
    }

    /// Sends `sig` (`-STOP`, `-CONT`, `-KILL`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
