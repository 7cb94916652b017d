//! Zero-downtime upgrades, end to end, on tokio (`examples/hello.rs`) and smol
//! (`examples/hello_smol.rs`): this test binary re-runs itself as the server
//! (the ignored `recipe_child` test), SIGUSR2 starts the next generation (the
//! same binary, the same arguments, the socket as descriptor 3), and clients
//! speak real HTTP over 127.0.0.1 throughout.
//!
//! The test process makes itself the child subreaper, so that every generation
//! (orphaned when its parent exits) is reaped here and its exit status checked.
//! Timeouts only catch hangs.

#![cfg(target_os = "linux")]
// Each included example brings its own copy of `examples/common/app.rs`, as it
// does when built alone.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/hello.rs"]
mod hello;
#[path = "../examples/hello_smol.rs"]
mod hello_smol;

#[path = "common/recipe.rs"]
mod recipe;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use recipe::{HANG, Recipe, read_to_close};

/// What a new generation does instead of serving, for the failure tests: set in
/// the first generation's environment, acted on only by a process that
/// inherited sockets.
const NEW_GENERATION: &str = "WIND_DOWN_TEST_NEW_GENERATION";

#[test]
#[ignore = "helper: the server process of the upgrade tests"]
fn recipe_child() {
    let Ok(recipe) = std::env::var("WIND_DOWN_RECIPE") else {
        return;
    };
    if std::env::var_os("LISTEN_FDS").is_some() {
        match std::env::var(NEW_GENERATION).as_deref() {
            Ok("exit") => std::process::exit(3),
            Ok("hang") => std::thread::sleep(HANG * 2),
            _ => {}
        }
    }
    let code = match recipe.as_str() {
        "hello" => hello::main(),
        "hello_smol" => hello_smol::main(),
        other => panic!("unknown recipe {other}"),
    };
    recipe::exit_with(code)
}

#[test]
#[ignore = "helper: prints what taking an inherited socket gives, for the LISTEN_FDS tests"]
fn listen_fds_child() {
    match wind_down::upgrade::listener("http") {
        Ok(Some(_)) => println!("taken: a listener"),
        Ok(None) => println!("taken: none"),
        Err(error) => println!("taken: {:?}: {error}", error.kind()),
    }
}

/// What `upgrade::listener` gives a process started with `LISTEN_FDS=fds`,
/// and `LISTEN_PID` its own pid or not.
fn take_with(fds: &str, ours: bool) -> String {
    let pid = if ours { "$$" } else { "1" };
    let line = format!(
        r#"LISTEN_PID={pid} LISTEN_FDS={fds} exec "$0" --ignored --exact listen_fds_child --nocapture"#
    );
    let output = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(line)
        .arg(std::env::current_exe().unwrap())
        .output()
        .expect("run the helper");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("taken: "))
        .unwrap_or_else(|| panic!("no answer: {stdout}"))
        .to_owned()
}

/// A malformed `LISTEN_FDS` meant for this process is a clear error, not
/// "nothing inherited"; one meant for another process is ignored.
#[test]
fn a_malformed_listen_fds_is_a_clear_error() {
    let taken = take_with("99999999999", true);
    assert!(taken.starts_with("InvalidData"), "{taken}");
    assert!(taken.contains("LISTEN_FDS=\"99999999999\""), "{taken}");
    assert!(take_with("banana", true).starts_with("InvalidData"));
    assert_eq!(take_with("99999999999", false), "none");
    assert_eq!(take_with("0", true), "none");
}

/// Makes this process the reaper of its orphaned descendants (once).
fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument.
        let set = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
        assert_eq!(set, 0, "prctl(PR_SET_CHILD_SUBREAPER)");
    });
}

/// Waits for the descendant `pid` (reparented here) to exit; its exit code.
fn reap(pid: u32) -> i32 {
    let start = Instant::now();
    // Bounded by HANG.
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into `status`, a valid integer.
        let got = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        if got == pid as libc::pid_t {
            assert!(libc::WIFEXITED(status), "{pid} ended by a signal: {status}");
            return libc::WEXITSTATUS(status);
        }
        assert!(got == 0, "waitpid({pid}) failed: it is not our descendant");
        assert!(start.elapsed() < HANG, "{pid} did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` exists (as a process or a zombie).
fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Waits for a line containing `needle` from any generation; returns it.
fn line_with(server: &Recipe, needle: &str) -> String {
    let start = Instant::now();
    // Bounded by HANG.
    loop {
        let left = HANG.saturating_sub(start.elapsed());
        let line = server
            .lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line with {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

/// The pid at the end of an `upgrade ...: new generation <pid>` line.
fn pid_in(line: &str) -> u32 {
    line.rsplit(' ').next().unwrap().parse().expect(line)
}

/// One request on `stream`; the body, and whether the server closes after it.
fn ask(stream: &mut TcpStream, path: &str) -> std::io::Result<(String, bool)> {
    let answer = recipe::get(stream, path)?;
    let closing = answer.closing();
    Ok((answer.body, closing))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(HANG)).unwrap();
    stream
}

fn pid_of(addr: SocketAddr) -> u32 {
    let (body, _) = ask(&mut connect(addr), "/pid").expect("GET /pid");
    body.trim().parse().expect("a pid")
}

/// Closed-loop clients: new connections and keep-alive requests for `/pid`
/// until stopped; every failure and every answering pid is recorded.
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    pids: Arc<Mutex<Vec<u32>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let pids = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, answered) = (stop.clone(), answered.clone());
                let (failures, pids) = (failures.clone(), pids.clone());
                std::thread::spawn(move || {
                    // Bounded by the stop, which every test sets.
                    while !stop.load(Ordering::SeqCst) {
                        let mut stream = match TcpStream::connect(addr) {
                            Ok(stream) => stream,
                            Err(e) => {
                                failures.lock().unwrap().push(format!("connect: {e}"));
                                continue;
                            }
                        };
                        stream.set_read_timeout(Some(HANG)).unwrap();
                        // Up to 5 requests per connection: keep-alive, then new.
                        for _ in 0..5 {
                            match ask(&mut stream, "/pid") {
                                Ok((body, closing)) => {
                                    answered.fetch_add(1, Ordering::SeqCst);
                                    let pid = body.trim().parse().unwrap_or(0);
                                    let mut pids = pids.lock().unwrap();
                                    if !pids.contains(&pid) {
                                        pids.push(pid);
                                    }
                                    if closing {
                                        break;
                                    }
                                }
                                Err(e) => {
                                    failures.lock().unwrap().push(format!("request: {e}"));
                                    break;
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            answered,
            failures,
            pids,
            threads,
        }
    }

    /// Waits until `pid` answered; then a little more load.
    fn until_answered_by(&self, pid: u32) {
        let start = Instant::now();
        while !self.pids.lock().unwrap().contains(&pid) {
            assert!(start.elapsed() < HANG, "{pid} never answered");
            std::thread::sleep(Duration::from_millis(5));
        }
        let answered = self.answered.load(Ordering::SeqCst);
        while self.answered.load(Ordering::SeqCst) < answered + 200 {
            assert!(start.elapsed() < HANG, "the load stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the clients; returns (requests answered, failures).
    fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.answered.load(Ordering::SeqCst), failures)
    }
}

/// Waits for the first generation (this test's own child) to exit; its exit
/// code. (Its output is read with `line_with`: the pipe stays open while a later
/// generation lives.)
fn exit_code(server: &mut Recipe) -> i32 {
    let start = Instant::now();
    // Bounded by HANG.
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status.code().expect("ended by a signal");
        }
        assert!(start.elapsed() < HANG, "the first generation did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn start(recipe: &str, env: &[(&str, &str)]) -> (Recipe, u32) {
    become_subreaper();
    let mut env = env.to_vec();
    env.push(("WIND_DOWN_DEADLINE_MS", "20000"));
    let server = Recipe::start(recipe, &env, 1);
    let pid = server.child.id();
    (server, pid)
}

/// Under load, with a long request in flight on the old generation: SIGUSR2
/// loses nothing. No refused or reset connection, every request answered, the
/// new generation answers, the old one finishes its long request and exits 0.
fn an_upgrade_under_load_loses_nothing(recipe: &str) {
    let (mut server, old) = start(recipe, &[]);
    let addr = server.addr();
    assert_eq!(pid_of(addr), old);
    let mut long = connect(addr);
    long.write_all(b"GET /slow/1500 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let load = Load::start(addr, 4);
    std::thread::sleep(Duration::from_millis(200));
    signal(old, "USR2");
    let new = pid_in(&line_with(&server, "upgrade ready: new generation"));
    assert_ne!(new, old);
    load.until_answered_by(new);
    let (answered, failures) = load.stop();
    assert!(failures.is_empty(), "{} lost: {failures:?}", failures.len());
    assert!(answered > 200, "only {answered} answered");
    let slow = read_to_close(&mut long);
    assert!(slow.ends_with("slow 1500\n"), "{slow:?}");
    line_with(&server, &format!("upgraded to {new}"));
    assert_eq!(exit_code(&mut server), 0);
    assert_eq!(pid_of(addr), new);
    signal(new, "TERM");
    assert_eq!(reap(new), 0);
}

/// The old generation saturated (one connection at a time, held by a slow
/// request): connections waiting in the listening socket's backlog are served
/// by the new generation, none refused.
fn the_backlog_is_served_by_the_new_generation(recipe: &str) {
    let (mut server, old) = start(recipe, &[("WIND_DOWN_MAX_CONNECTIONS", "1")]);
    let addr = server.addr();
    let mut long = connect(addr);
    long.write_all(b"GET /slow/2000 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Queued: the old generation does not accept while its one connection lives.
    let mut queued: Vec<TcpStream> = (0..5).map(|_| connect(addr)).collect();
    for stream in &mut queued {
        stream
            .write_all(b"GET /pid HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
            .unwrap();
    }
    signal(old, "USR2");
    let new = pid_in(&line_with(&server, "upgrade ready: new generation"));
    for stream in &mut queued {
        let answer = read_to_close(stream);
        assert!(answer.ends_with(&format!("\r\n\r\n{new}\n")), "{answer:?}");
    }
    assert!(read_to_close(&mut long).ends_with("slow 2000\n"));
    assert_eq!(exit_code(&mut server), 0);
    signal(new, "TERM");
    assert_eq!(reap(new), 0);
}

/// A new generation that exits before it is ready: reported, and the old one
/// serves on; its SIGTERM drains it as usual.
fn a_new_generation_that_exits_is_reported_and_the_old_one_serves_on(recipe: &str) {
    let (mut server, old) = start(recipe, &[(NEW_GENERATION, "exit")]);
    let addr = server.addr();
    signal(old, "USR2");
    let failed = line_with(&server, "upgrade failed: ");
    assert!(failed.contains("exited before it was ready"), "{failed}");
    assert_eq!(pid_of(addr), old);
    signal(old, "TERM");
    let (status, output) = server.wait();
    assert_eq!(status.code(), Some(0), "{output:?}");
    assert!(
        !output.iter().any(|l| l.starts_with("upgraded to")),
        "{output:?}"
    );
}

/// A new generation never ready: killed at the timeout, reported; a request
/// during the upgrade is refused; the old one serves on, and can upgrade again.
fn a_new_generation_never_ready_is_killed_and_a_second_request_refused(recipe: &str) {
    let env = [
        (NEW_GENERATION, "hang"),
        ("WIND_DOWN_UPGRADE_TIMEOUT_MS", "1500"),
    ];
    let (mut server, old) = start(recipe, &env);
    let addr = server.addr();
    signal(old, "USR2");
    let started = pid_in(&line_with(&server, "upgrade started: new generation"));
    signal(old, "USR2");
    line_with(&server, "upgrade refused: one is under way");
    let failed = line_with(&server, "upgrade failed: ");
    assert!(failed.contains("was not ready within"), "{failed}");
    assert!(failed.contains("was killed"), "{failed}");
    assert!(
        !exists(started),
        "the new generation {started} still exists"
    );
    assert_eq!(pid_of(addr), old);
    signal(old, "TERM");
    let (status, output) = server.wait();
    assert_eq!(status.code(), Some(0), "{output:?}");
}

/// SIGTERM during an upgrade cancels it: the new generation is killed before
/// the old one drains and exits 0; nothing of the upgrade outlives it.
fn sigterm_during_an_upgrade_cancels_it(recipe: &str) {
    let env = [
        (NEW_GENERATION, "hang"),
        ("WIND_DOWN_UPGRADE_TIMEOUT_MS", "30000"),
    ];
    let (mut server, old) = start(recipe, &env);
    signal(old, "USR2");
    let started = pid_in(&line_with(&server, "upgrade started: new generation"));
    signal(old, "TERM");
    let failed = line_with(&server, "upgrade failed: ");
    assert!(failed.contains("cancelled by a signal"), "{failed}");
    assert_eq!(exit_code(&mut server), 0);
    assert!(
        !exists(started),
        "the new generation {started} outlived the old one"
    );
}

/// Three upgrades in a row, each to the generation before's successor, then
/// SIGTERM: every generation exits 0, the last one drained.
fn three_chained_upgrades_then_sigterm(recipe: &str) {
    let (mut server, first) = start(recipe, &[]);
    let addr = server.addr();
    let mut generations = vec![first];
    for _ in 0..3 {
        let current = *generations.last().unwrap();
        signal(current, "USR2");
        let next = pid_in(&line_with(&server, "upgrade ready: new generation"));
        line_with(&server, &format!("upgraded to {next}"));
        assert_eq!(pid_of(addr), next);
        generations.push(next);
    }
    assert_eq!(exit_code(&mut server), 0);
    let last = generations.pop().unwrap();
    for middle in &generations[1..] {
        assert_eq!(reap(*middle), 0, "generation {middle}");
    }
    signal(last, "TERM");
    assert_eq!(reap(last), 0);
    let refused = TcpStream::connect(addr);
    assert!(refused.is_err(), "the socket outlived the last generation");
}

/// One datagram from `socket`: its text, and the port of the listening socket
/// it carries (`SCM_RIGHTS`), if any.
fn notification(socket: &UnixDatagram) -> (String, Option<u16>) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut text = [0u8; 4096];
    let mut control = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: text.as_mut_ptr().cast(),
        iov_len: text.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = control.len();
    // SAFETY: the header points at buffers that live through the call.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut message, 0) };
    assert!(n >= 0, "recvmsg: {}", std::io::Error::last_os_error());
    let text = String::from_utf8_lossy(&text[..n as usize]).into_owned();
    let mut port = None;
    // SAFETY: the CMSG macros walk the control buffer recvmsg filled.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&message);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                let fd = OwnedFd::from_raw_fd(raw);
                let listener = std::net::TcpListener::from(fd);
                port = Some(listener.local_addr().expect("a TCP socket").port());
            }
            cmsg = libc::CMSG_NXTHDR(&message, cmsg);
        }
    }
    (text, port)
}

/// systemd's view, from a `NOTIFY_SOCKET` this test owns: both generations say
/// READY=1, the old one names the new one the main process (MAINPID), and with
/// the fd store asked for, the listening socket itself is handed to systemd.
fn systemd_hears_the_new_main_pid(recipe: &str) {
    let path = std::env::temp_dir().join(format!(
        "wind-down-test-notify-{}-{recipe}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let notify = UnixDatagram::bind(&path).unwrap();
    notify.set_read_timeout(Some(HANG)).unwrap();
    let socket = path.to_str().unwrap().to_owned();
    let env = [
        ("NOTIFY_SOCKET", socket.as_str()),
        ("WIND_DOWN_FDSTORE", "1"),
    ];
    let (mut server, old) = start(recipe, &env);
    let port = server.addr().port();
    let mut stored = 0;
    let mut next = || {
        let (text, fd_port) = notification(&notify);
        if text.starts_with("FDSTORE=1") {
            assert!(text.contains("FDNAME=http"), "{text}");
            assert_eq!(fd_port, Some(port), "the stored socket is not the listener");
            stored += 1;
        }
        text
    };
    // Bounded: the first generation sends a handful of notifications.
    while !next().starts_with("READY=1") {}
    signal(old, "USR2");
    let new = pid_in(&line_with(&server, "upgrade ready: new generation"));
    let mut readies = 1;
    // Bounded: the generations send a handful of notifications each.
    let main_pid = loop {
        let message = next();
        if message.starts_with("READY=1") {
            readies += 1;
        }
        if let Some(pid) = message.strip_prefix("MAINPID=") {
            break pid.trim().parse::<u32>().unwrap();
        }
    };
    assert_eq!(main_pid, new);
    assert_eq!(
        readies, 2,
        "the new generation's READY=1 came after MAINPID"
    );
    assert_eq!(stored, 2, "each generation stores the socket once");
    assert_eq!(exit_code(&mut server), 0);
    signal(new, "TERM");
    assert_eq!(reap(new), 0);
    let _ = std::fs::remove_file(&path);
}

macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod tokio_runtime {
            $( #[test] fn $name() { super::$name("hello") } )*
        }
        mod smol_runtime {
            $( #[test] fn $name() { super::$name("hello_smol") } )*
        }
    };
}

on_both_runtimes!(
    an_upgrade_under_load_loses_nothing,
    the_backlog_is_served_by_the_new_generation,
    a_new_generation_that_exits_is_reported_and_the_old_one_serves_on,
    a_new_generation_never_ready_is_killed_and_a_second_request_refused,
    sigterm_during_an_upgrade_cancels_it,
    three_chained_upgrades_then_sigterm,
    systemd_hears_the_new_main_pid,
);
