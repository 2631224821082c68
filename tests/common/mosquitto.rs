//! `mosquitto` for the MQTT test: started on a free loopback port with a config that keeps
//! every queued message of a persistent session (nothing on disk); scripts/mosquitto.sh
//! installs it.

use std::path::Path;
use std::process::{Command, Stdio};

use super::process::{Process, free_port};

/// `mosquitto` (its child and port in the [`Process`] it derefs to).
pub struct Broker(Process);

impl std::ops::Deref for Broker {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.0
    }
}

impl Broker {
    /// `mosquitto` on a free loopback port; its config and log under `dir`.
    pub fn start(dir: &Path) -> Broker {
        let port = free_port();
        let config = dir.join("mosquitto.conf");
        // Unacknowledged messages in flight to a client (default 20) at least a batch; no
        // limit on what is queued for a session (mosquitto drops beyond 1,000 by default).
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_inflight_messages 4096\nmax_queued_messages 0\n"
            ),
        )
        .unwrap();
        let bin = ["/usr/sbin/mosquitto", "mosquitto"]
            .into_iter()
            .find(|b| !b.starts_with('/') || Path::new(b).exists())
            .unwrap();
        let mut command = Command::new(bin);
        command
            .args(["-c", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("mosquitto.log")).unwrap());
        Broker(Process::start(command, port, "mosquitto (scripts/mosquitto.sh installs it)"))
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}
