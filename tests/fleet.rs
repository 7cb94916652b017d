//! A rolling restart behind a real load balancer: HAProxy in front of three
//! instances of `examples/hello.rs` (this test binary re-run as each instance),
//! active health checks of `/ready` every second (HAProxy's defaults otherwise:
//! down after 3 failed checks, up after 2 good ones), closed-loop load through
//! HAProxy, and each instance in turn stopped with SIGTERM and replaced on the
//! same port 3 s later (or once it exited). With a drain delay longer than the
//! time HAProxy takes to see the instance down (3 checks, 3 s), no request
//! fails; the same fleet with no delay (the default) is the baseline, and loses
//! requests.
//!
//! It needs `haproxy` (Debian's package): plain `cargo test` leaves it out
//! (ignored); `.ci/run` installs HAProxy and runs it by name. Timeouts only catch
//! hangs.

#![cfg(target_os = "linux")]

#[path = "../examples/hello.rs"]
mod hello;

#[path = "common/recipe.rs"]
mod recipe;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use recipe::{HANG, Recipe};

#[test]
#[ignore = "helper: an instance of the fleet"]
fn recipe_child() {
    if std::env::var("WIND_DOWN_RECIPE").is_err() {
        return;
    }
    recipe::exit_with(hello::main())
}

/// A port free on 127.0.0.1 now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn instance(port: u16, drain_delay_ms: u64) -> Recipe {
    let addr = format!("127.0.0.1:{port}");
    let delay = drain_delay_ms.to_string();
    let env = [
        ("WIND_DOWN_RECIPE", "hello"),
        ("WIND_DOWN_DRAIN_DELAY_MS", delay.as_str()),
        ("WIND_DOWN_DEADLINE_MS", "10000"),
    ];
    let instance = Recipe::start_at("hello", &addr, &env, 1);
    assert_eq!(instance.addr().port(), port);
    instance
}

/// What HAProxy's log said of the requests it passed on: (not answered 200,
/// retried or redispatched to another server after a failed connection).
#[derive(Default)]
struct Logged {
    failed: AtomicUsize,
    retried: AtomicUsize,
}

/// HAProxy in the foreground, on `front`, balancing over `ports`, each request
/// logged as `request <status> <retries> <server>` and counted in `logged`.
fn haproxy(front: u16, ports: &[u16], dir: &std::path::Path, logged: Arc<Logged>) -> Child {
    let servers: String = ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("  server s{i} 127.0.0.1:{port} check\n"))
        .collect();
    let config = format!(
        "global\n  maxconn 4096\n  log stdout format raw local0\n\
         defaults\n  mode http\n  log global\n  log-format \"request %ST %rc %s\"\n  \
         timeout connect 1s\n  timeout client 10s\n  timeout server 10s\n\
         frontend front\n  bind 127.0.0.1:{front}\n  default_backend fleet\n\
         backend fleet\n  balance roundrobin\n  option httpchk GET /ready\n  \
         http-check expect status 200\n  default-server inter 1s\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy is not installed: `apt-get install haproxy` (.ci/run does)");
    let log = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(log).lines() {
            let Ok(line) = line else { break };
            let mut fields = line
                .split_whitespace()
                .skip_while(|f| *f != "request")
                .skip(1);
            let (Some(status), Some(retries)) = (fields.next(), fields.next()) else {
                continue;
            };
            if status != "200" {
                logged.failed.fetch_add(1, Ordering::SeqCst);
            }
            if retries != "0" {
                logged.retried.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let start = Instant::now();
    // Bounded by HANG: until HAProxy answers through a server.
    loop {
        let answered = TcpStream::connect(("127.0.0.1", front))
            .map_err(|e| e.to_string())
            .and_then(|mut stream| {
                stream.set_read_timeout(Some(HANG)).unwrap();
                ask(&mut stream, "/")
            });
        if answered.is_ok() {
            return child;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "HAProxy exited: {status} (its configuration: {})",
                path.display()
            );
        }
        assert!(start.elapsed() < HANG, "HAProxy never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn connect(port: u16) -> TcpStream {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let stream = TcpStream::connect_timeout(&addr, HANG).expect("connect to HAProxy");
    stream.set_read_timeout(Some(HANG)).unwrap();
    stream
}

/// One request on `stream`: Ok(whether the connection stays open) for a 200,
/// Err otherwise.
fn ask(stream: &mut TcpStream, path: &str) -> Result<bool, String> {
    let answer = recipe::get(stream, path).map_err(|e| e.to_string())?;
    if !answer.ok() {
        return Err(answer.head.lines().next().unwrap_or_default().to_owned());
    }
    Ok(!answer.closing())
}

/// Closed-loop load through HAProxy on `clients` threads until stopped; returns
/// (requests answered 200, failures with their first few reasons).
fn load(
    front: u16,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> impl FnOnce() -> (usize, usize, Vec<String>) {
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (stop, ok, failed, reasons) =
                (stop.clone(), ok.clone(), failed.clone(), reasons.clone());
            std::thread::spawn(move || {
                // Bounded by the stop.
                while !stop.load(Ordering::SeqCst) {
                    let mut stream = connect(front);
                    // Keep-alive requests on the connection, as long as it lasts.
                    for _ in 0..20 {
                        match ask(&mut stream, "/") {
                            Ok(open) => {
                                ok.fetch_add(1, Ordering::SeqCst);
                                if !open {
                                    break;
                                }
                            }
                            Err(reason) => {
                                failed.fetch_add(1, Ordering::SeqCst);
                                let mut reasons = reasons.lock().unwrap();
                                if reasons.len() < 5 {
                                    reasons.push(reason);
                                }
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    move || {
        for thread in threads {
            thread.join().unwrap();
        }
        let reasons = reasons.lock().unwrap().clone();
        (
            ok.load(Ordering::SeqCst),
            failed.load(Ordering::SeqCst),
            reasons,
        )
    }
}

/// What one rolling restart cost.
struct Restart {
    /// Requests the clients got a 200 for.
    answered: usize,
    /// Requests the clients did not (with the first few reasons).
    failed: usize,
    reasons: Vec<String>,
    /// Requests HAProxy had to retry (an instance refused the connection).
    retried: usize,
    /// How long the load ran.
    seconds: f64,
}

impl std::fmt::Display for Restart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = self.answered as f64 / self.seconds;
        write!(
            f,
            "{} answered in {:.1} s ({rate:.0}/s), {} failed {:?}, {} retried by HAProxy",
            self.answered, self.seconds, self.failed, self.reasons, self.retried
        )
    }
}

/// Three instances behind HAProxy, a rolling restart under load.
fn rolling_restart(drain_delay_ms: u64) -> Restart {
    let dir = std::env::temp_dir().join(format!(
        "wind-down-fleet-{}-{drain_delay_ms}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut instances: Vec<Recipe> = ports.iter().map(|&p| instance(p, drain_delay_ms)).collect();
    let front = free_port();
    let logged = Arc::new(Logged::default());
    let mut balancer = haproxy(front, &ports, &dir, logged.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let finish = load(front, 4, stop.clone());
    let loaded = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    for (i, &port) in ports.iter().enumerate() {
        let stopped = Instant::now();
        instances[i].signal("TERM");
        let (status, _) = instances[i].wait();
        assert_eq!(status.code(), Some(0), "instance {i} did not drain");
        // Replaced 3 s after its SIGTERM, or once it is gone.
        std::thread::sleep(Duration::from_secs(3).saturating_sub(stopped.elapsed()));
        instances[i] = instance(port, drain_delay_ms);
        // Up again after two good checks a second apart (HAProxy's `rise 2`).
        std::thread::sleep(Duration::from_secs(3));
    }
    stop.store(true, Ordering::SeqCst);
    let (answered, failed, reasons) = finish();
    let seconds = loaded.elapsed().as_secs_f64();
    let retried = logged.retried.load(Ordering::SeqCst);
    let failed = failed.max(logged.failed.load(Ordering::SeqCst));
    let _ = balancer.kill();
    let _ = balancer.wait();
    for mut instance in instances {
        instance.signal("TERM");
        let _ = instance.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    Restart {
        answered,
        failed,
        reasons,
        retried,
        seconds,
    }
}

#[test]
#[ignore = "needs HAProxy (Debian package haproxy): .ci/run installs it and runs this test by name"]
fn a_rolling_restart_behind_haproxy_loses_nothing_with_a_drain_delay() {
    // Checks every second, down after three failures (HAProxy's defaults): an
    // instance is out of rotation at most 3 s after its first 503; 4 s covers it.
    let delayed = rolling_restart(4000);
    println!("drain delay 4 s: {delayed}");
    let baseline = rolling_restart(0);
    println!("no drain delay (baseline): {baseline}");
    assert!(
        delayed.answered > 1000,
        "too little load to tell: {delayed}"
    );
    assert_eq!(delayed.failed, 0, "lost with a drain delay: {delayed}");
    assert_eq!(delayed.retried, 0, "an instance refused HAProxy: {delayed}");
    assert!(
        baseline.failed + baseline.retried > 0,
        "the baseline neither lost nor retried a request: the test no longer shows what the delay is for"
    );
}
