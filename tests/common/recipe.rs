//! Recipes (`examples/`) run as child processes for the tests that check them
//! from outside: the test binary includes the example and re-runs itself as the
//! server child through its ignored `recipe_child` test, which calls the
//! example's `main` for `WIND_DOWN_RECIPE`.

#![allow(dead_code)] // each test binary uses its part

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Only a hang gets this far.
pub const HANG: Duration = Duration::from_secs(60);

/// Exits the child with the example's outcome: 0 drained, 1 forced, 2 failed.
pub fn exit_with(code: std::io::Result<std::process::ExitCode>) -> ! {
    let status = match code {
        Ok(code) if code == std::process::ExitCode::SUCCESS => 0,
        Ok(_) => 1,
        Err(error) => {
            eprintln!("{error}");
            2
        }
    };
    std::process::exit(status);
}

/// A recipe's server, running as a child in a process group of its own. The
/// group is killed on drop.
pub struct Recipe {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    /// Each `listening on` / `health on` address, in the order printed.
    pub addrs: Vec<SocketAddr>,
}

impl Recipe {
    /// Starts `recipe` on 127.0.0.1 with extra environment variables; returns once
    /// it printed `listeners` address lines (`listening on ...`, `health on ...`).
    pub fn start(recipe: &str, env: &[(&str, &str)], listeners: usize) -> Recipe {
        Recipe::start_at(recipe, "127.0.0.1:0", env, listeners)
    }

    /// [`start`](Recipe::start), listening on `addr`.
    pub fn start_at(recipe: &str, addr: &str, env: &[(&str, &str)], listeners: usize) -> Recipe {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--ignored", "--exact", "recipe_child", "--nocapture"])
            .env("WIND_DOWN_RECIPE", recipe)
            .env("WIND_DOWN_ADDR", addr)
            .envs(env.iter().copied());
        // A process group of its own: whatever it starts (an upgrade's next
        // generation) is killed with it if a test ends early.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let (child, lines) = spawn_with_lines(command);
        let mut addrs = Vec::new();
        while addrs.len() < listeners {
            let line = lines.recv_timeout(HANG).expect("the recipe did not start");
            if let Some(at) = line.find(" on 127.0.0.1:") {
                addrs.push(line[at + " on ".len()..].trim().parse().unwrap());
            }
        }
        Recipe {
            child,
            lines,
            addrs,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the child to exit; returns its status and everything it printed.
    pub fn wait(&mut self) -> (ExitStatus, Vec<String>) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(start.elapsed() < HANG, "the recipe did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        let output = self.lines.iter().collect();
        (status, output)
    }

    /// Waits for the child and asserts that it drained: exit status 0.
    pub fn expect_drained(&mut self) {
        let (status, output) = self.wait();
        assert_eq!(status.code(), Some(0), "{status:?} {output:?}");
        assert!(
            output.iter().any(|l| l.ends_with("outcome: drained")),
            "{output:?}"
        );
    }
}

impl Drop for Recipe {
    /// Kills the child's process group (the child and what it started), then
    /// reaps the child.
    fn drop(&mut self) {
        #[cfg(unix)]
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` with its stdout read line by line on a thread of its own.
pub fn spawn_with_lines(mut cmd: Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the server child");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

/// Reads from `stream` until `needle` has arrived; returns what was read.
pub fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    stream.set_read_timeout(Some(HANG)).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = stream.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "closed before {needle:?}: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Reads until the peer closes; returns what was read.
pub fn read_to_close(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(HANG)).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("read to the end");
    String::from_utf8_lossy(&rest).into_owned()
}

/// A response read by [`get`]: its lower-cased head and its body.
pub struct Answer {
    pub head: String,
    pub body: String,
}

impl Answer {
    /// Whether the status is 200.
    pub fn ok(&self) -> bool {
        self.head.starts_with("http/1.1 200")
    }

    /// Whether the server closes the connection after it.
    pub fn closing(&self) -> bool {
        self.head.contains("connection: close")
    }
}

/// `GET path` on `stream` (HTTP/1.1, keep-alive), and its response, framed by
/// its `content-length`; an error if the peer closes first.
pub fn get(stream: &mut TcpStream, path: &str) -> std::io::Result<Answer> {
    use std::io::Write;
    let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    // Bounded by the response's size (headers, then content-length).
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&seen[end + 4..end + 4 + length]);
                let body = body.into_owned();
                return Ok(Answer { head, body });
            }
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            let error = format!("closed before a whole response: {text:?}");
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                error,
            ));
        }
        seen.extend_from_slice(&buf[..n]);
    }
}
