//! Clients for the shutdown-edge tests: a keep-alive load generator for the
//! "nothing sent is lost" tests (clients in a closed loop of `GET /` on one
//! connection each, recording per request whether its bytes were all written
//! before a given moment and whether it was answered), and peers that never
//! start a request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const HANG: Duration = Duration::from_secs(60);
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";

/// The seed of a randomized test: `TEST_SEED`, or a new one; printed, so that a
/// failing run can be replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("seed {seed}");
    seed
}

/// One request as its client saw it.
struct Sent {
    written_at: Instant,
    answered: bool,
}

/// Running clients.
pub struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Vec<Sent>>>,
}

impl Load {
    /// Starts `n` clients against `addr`; returns once each has had its first
    /// response (so its connection was accepted: one still in the listener's
    /// backlog at the shutdown is closed unserved, as documented).
    pub fn start(addr: SocketAddr, n: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let warmed = Arc::new(AtomicUsize::new(0));
        let clients = (0..n)
            .map(|_| {
                let (stop, warmed) = (stop.clone(), warmed.clone());
                std::thread::spawn(move || client(addr, &stop, &warmed))
            })
            .collect();
        let start = Instant::now();
        while warmed.load(Ordering::SeqCst) < n {
            assert!(start.elapsed() < HANG, "the clients never got going");
            std::thread::sleep(Duration::from_millis(1));
        }
        Load { stop, clients }
    }

    /// Stops the clients (the server has closed their connections by now, or
    /// they stop at their next round); returns how many requests were fully
    /// written before `at`, and how many of those got no response.
    pub fn finish(self, at: Instant) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        let (mut before, mut lost) = (0, 0);
        for client in self.clients {
            for sent in client.join().unwrap() {
                if sent.written_at < at {
                    before += 1;
                    lost += usize::from(!sent.answered);
                }
            }
        }
        (before, lost)
    }
}

/// One client: `GET /` again and again until the connection ends (or `stop`, or
/// the cap); counts itself in `warmed` after its first response.
fn client(addr: SocketAddr, stop: &AtomicBool, warmed: &AtomicUsize) -> Vec<Sent> {
    let mut sent = Vec::new();
    let Ok(mut c) = TcpStream::connect(addr) else {
        return sent;
    };
    c.set_read_timeout(Some(HANG)).unwrap();
    // Bounded by the cap; the server's close ends it sooner.
    for _ in 0..100_000 {
        if stop.load(Ordering::SeqCst) || c.write_all(REQUEST).is_err() {
            break;
        }
        let written_at = Instant::now();
        let answered = read_hello(&mut c);
        sent.push(Sent {
            written_at,
            answered,
        });
        if !answered {
            break;
        }
        if sent.len() == 1 {
            warmed.fetch_add(1, Ordering::SeqCst);
        }
    }
    sent
}

/// Reads one `hello` response; `false` if the connection ends first.
fn read_hello(c: &mut TcpStream) -> bool {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    // Bounded by HANG per read and the response's size.
    while !got.ends_with(b"\r\n\r\nhello\n") {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// Three connections to `addr` that never start a request, by kind: one silent,
/// one with half-sent headers, one with an HTTP/2 preface and no SETTINGS.
pub fn unstarted_peers(addr: SocketAddr) -> [(&'static str, TcpStream); 3] {
    let silent = TcpStream::connect(addr).unwrap();
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .unwrap();
    let mut preface = TcpStream::connect(addr).unwrap();
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .unwrap();
    [
        ("silent", silent),
        ("half-sent", half),
        ("preface", preface),
    ]
}
