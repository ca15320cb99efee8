//! devicegate under attack: the hostile-internet attacks of issue #12, each alone and then
//! all together, against a release build of the real binary on a temporary database, with
//! a person's `/healthz` probe from another address the whole time.
//!
//!     cargo build --release && cargo run --release --example attack -- [--help]
//!
//! Per attack it prints the requests sent, how many the server refused (an error status,
//! or a connection it closed), silent closes (a complete request answered by a closed
//! connection with no status line: never acceptable), the share of `/healthz` probes
//! answered within 1 s, the server's peak RSS and the database's growth (rows in every
//! table, and bytes of the file and its WAL). Every load goes only to 127.0.0.0/8 (sources
//! 127.0.0.x are all loopback), is bounded in count and time, and stops by itself.
//!
//! The attacks: `slow-body` (bodies trickled one byte every 2 s), `slow-reader` (6
//! connections pipelining requests without ever reading an answer), `upgrade` (`Connection:
//! Upgrade`, no body), `slowloris` (300 connections, one header line every 3 s),
//! `lockout` (wrong passwords for `admin` from one address, then the right one from
//! another), `sign-in-flood` (32 connections of wrong passwords from rotating addresses:
//! password hashing memory), `authorize-burst` (3,000 device authorizations from one
//! address), `page-views` (300 cookie-less page views), `framing` (smuggling and malformed
//! heads).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: cargo run --release --example attack -- [--phase-seconds 12]
       [--together-seconds 30] [--workers N] [--bin target/release/devicegate]
       [--only slow-body,slow-reader,upgrade,slowloris,lockout,sign-in-flood,authorize-burst,page-views,framing,together]";

const ADMIN_PASSWORD: &str = "attack-admin-password-1";
/// The person's address: probes and the right password come from here.
const PERSON: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// The attacker's main address.
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const ATTACKS: [&str; 9] = [
    "slow-body",
    "slow-reader",
    "upgrade",
    "slowloris",
    "lockout",
    "sign-in-flood",
    "authorize-burst",
    "page-views",
    "framing",
];

struct Options {
    phase: Duration,
    together: Duration,
    workers: Option<usize>,
    bin: PathBuf,
    only: Vec<String>,
}

/// What one attack did, counted by its threads.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    refused: AtomicU64,
    silent: AtomicU64,
    /// Free-form findings (e.g. whether the right password still signed in).
    notes: Mutex<Vec<String>>,
}

impl Tally {
    fn add(&self, outcome: &Outcome) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Status(status) if *status >= 400 => {
                self.refused.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Status(_) => {}
            Outcome::Closed => {
                self.refused.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Silent => {
                self.silent.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::NoAnswer => {}
        }
    }

    fn note(&self, note: String) {
        if let Ok(mut notes) = self.notes.lock() {
            notes.push(note);
        }
    }
}

/// How a request ended, from the client's side.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Status(u16),
    /// The server closed a connection whose request was not complete (a deadline or a cap).
    Closed,
    /// A complete request, then EOF or reset with no status line.
    Silent,
    /// Nothing within the client's patience.
    NoAnswer,
}

/// One row of the report.
struct Row {
    name: String,
    sent: u64,
    refused: u64,
    silent: u64,
    healthz_ok: u64,
    healthz_all: u64,
    peak_rss_kb: u64,
    rows_grown: i64,
    bytes_grown: i64,
    notes: Vec<String>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    let opt = parse(&args);
    if !opt.bin.exists() {
        eprintln!(
            "no server binary at {}: run `cargo build --release` first (or pass --bin)",
            opt.bin.display()
        );
        std::process::exit(2);
    }
    let work = tempfile::tempdir().expect("temp dir");
    let db = work.path().join("attack.db");
    let (mut server, addr) = start_server(&opt, &db);
    let pid = server.id();
    println!(
        "devicegate attack: {} s per attack, {} s all together, against {} (pid {pid}), {} cores",
        opt.phase.as_secs(),
        opt.together.as_secs(),
        addr,
        thread::available_parallelism().map_or(1, |n| n.get())
    );

    let probe = Probe::start(addr, pid);
    let mut rows = Vec::new();
    for name in ATTACKS {
        if opt.runs(name) {
            rows.push(phase(&probe, &db, addr, name, &[name], opt.phase));
        }
    }
    if opt.runs("together") {
        rows.push(phase(
            &probe,
            &db,
            addr,
            "all together",
            &ATTACKS,
            opt.together,
        ));
    }
    probe.stop();
    let hwm = proc_status_kb(pid, "VmHWM:").unwrap_or(0);
    let alive = matches!(server.try_wait(), Ok(None));
    let _ = server.kill();
    let _ = server.wait();

    println!();
    println!(
        "| attack | requests | refused | silent closes | /healthz ≤ 1 s | peak RSS | DB rows | DB bytes |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let share = if row.healthz_all == 0 {
            0.0
        } else {
            100.0 * row.healthz_ok as f64 / row.healthz_all as f64
        };
        println!(
            "| {} | {} | {} | {} | {:.1}% ({}/{}) | {:.1} MB | {:+} | {:+} KB |",
            row.name,
            row.sent,
            row.refused,
            row.silent,
            share,
            row.healthz_ok,
            row.healthz_all,
            row.peak_rss_kb as f64 / 1024.0,
            row.rows_grown,
            row.bytes_grown / 1024
        );
    }
    println!();
    for row in &rows {
        for note in &row.notes {
            println!("- {}: {note}", row.name);
        }
    }
    println!(
        "- server peak RSS over the whole run (VmHWM): {:.1} MB",
        hwm as f64 / 1024.0
    );
    println!(
        "- server still running at the end: {}",
        if alive { "yes" } else { "NO" }
    );
}

impl Options {
    fn runs(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

fn parse(args: &[String]) -> Options {
    let mut opt = Options {
        phase: Duration::from_secs(12),
        together: Duration::from_secs(30),
        workers: None,
        bin: default_bin(),
        only: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage_error(flag));
        let secs = || Duration::from_secs(value.parse().unwrap_or_else(|_| usage_error(flag)));
        match flag.as_str() {
            "--phase-seconds" => opt.phase = secs(),
            "--together-seconds" => opt.together = secs(),
            "--workers" => opt.workers = Some(value.parse().unwrap_or_else(|_| usage_error(flag))),
            "--bin" => opt.bin = PathBuf::from(value),
            "--only" => opt.only = value.split(',').map(str::to_string).collect(),
            _ => usage_error(flag),
        }
    }
    opt
}

fn usage_error(flag: &str) -> ! {
    eprintln!("bad or incomplete option {flag}\n{USAGE}");
    std::process::exit(2);
}

/// `target/release/devicegate`, beside `target/release/examples/attack`.
fn default_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("devicegate")))
        .unwrap_or_else(|| PathBuf::from("target/release/devicegate"))
}

/// The real binary with its defaults (only the port and the database are chosen), and the
/// `admin` password set to a known one through the admin CLI.
fn start_server(opt: &Options, db: &Path) -> (Child, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut command = Command::new(&opt.bin);
    command
        .arg("--db")
        .arg(db)
        .args(["serve", "--listen", &addr.to_string()]);
    if let Some(workers) = opt.workers {
        command.args(["--workers", &workers.to_string()]);
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(match std::env::var_os("ATTACK_SERVER_LOG") {
            Some(path) => std::fs::File::create(path).map_or(Stdio::null(), Stdio::from),
            None => Stdio::null(),
        })
        .spawn()
        .expect("start the server");
    let started = Instant::now();
    while get_status(addr, PERSON, "/healthz") != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let mut passwd = Command::new(&opt.bin)
        .arg("--db")
        .arg(db)
        .args(["user", "passwd", "admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("devicegate user passwd");
    if let Some(mut stdin) = passwd.stdin.take() {
        writeln!(stdin, "{ADMIN_PASSWORD}").expect("write the password");
    }
    assert!(
        passwd.wait().is_ok_and(|s| s.success()),
        "could not set the admin password"
    );
    (child, addr)
}

/// The person: one `/healthz` every 100 ms from 127.0.0.2 on a new connection, each given
/// 1 s, counted for the phase running at the time; and the server's RSS every 50 ms.
struct Probe {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    all: Arc<AtomicU64>,
    peak_rss_kb: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Probe {
    fn start(addr: SocketAddr, pid: u32) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, all, peak) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let prober = {
            let (stop, ok, all) = (stop.clone(), ok.clone(), all.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let answered = get_status(addr, PERSON, "/healthz") == Some(200);
                    all.fetch_add(1, Ordering::Relaxed);
                    if answered && started.elapsed() <= Duration::from_secs(1) {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(100).saturating_sub(started.elapsed()));
                }
            })
        };
        let sampler = {
            let (stop, peak) = (stop.clone(), peak.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = proc_status_kb(pid, "VmRSS:") {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Probe {
            stop,
            ok,
            all,
            peak_rss_kb: peak,
            threads: vec![prober, sampler],
        }
    }

    /// Starts counting a new phase.
    fn reset(&self) {
        self.ok.store(0, Ordering::Relaxed);
        self.all.store(0, Ordering::Relaxed);
        self.peak_rss_kb.store(0, Ordering::Relaxed);
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Runs `attacks` at once for `length` (or until each has finished its bounded work, and
/// at least `length`), then reports.
fn phase(
    probe: &Probe,
    db: &Path,
    addr: SocketAddr,
    name: &str,
    attacks: &[&str],
    length: Duration,
) -> Row {
    let before = db_size(db);
    probe.reset();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let handles: Vec<_> = attacks
        .iter()
        .map(|attack| {
            let (attack, stop, tally) = (attack.to_string(), stop.clone(), tally.clone());
            thread::spawn(move || run_attack(&attack, addr, &stop, &tally))
        })
        .collect();
    thread::sleep(length);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let after = db_size(db);
    let notes = tally.notes.lock().map(|n| n.clone()).unwrap_or_default();
    let row = Row {
        name: name.to_string(),
        sent: tally.sent.load(Ordering::Relaxed),
        refused: tally.refused.load(Ordering::Relaxed),
        silent: tally.silent.load(Ordering::Relaxed),
        healthz_ok: probe.ok.load(Ordering::Relaxed),
        healthz_all: probe.all.load(Ordering::Relaxed),
        peak_rss_kb: probe.peak_rss_kb.load(Ordering::Relaxed),
        rows_grown: after.0 - before.0,
        bytes_grown: after.1 - before.1,
        notes,
    };
    println!(
        "{name}: {} requests, {} refused, {} silent closes, /healthz {}/{} within 1 s",
        row.sent, row.refused, row.silent, row.healthz_ok, row.healthz_all
    );
    row
}

fn run_attack(name: &str, addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    match name {
        "slow-body" => slow_connections(addr, stop, tally, 8, slow_body_head, b"x"),
        "slow-reader" => slow_readers(addr, stop, tally),
        "upgrade" => slow_connections(addr, stop, tally, 8, upgrade_head, b""),
        "slowloris" => slow_connections(addr, stop, tally, 300, slowloris_head, b"X-a: b\r\n"),
        "lockout" => lockout(addr, stop, tally),
        "sign-in-flood" => sign_in_flood(addr, stop, tally),
        "authorize-burst" => authorize_burst(addr, stop, tally),
        "page-views" => page_views(addr, stop, tally),
        "framing" => framing(addr, stop, tally),
        _ => unreachable!("unknown attack {name}"),
    }
}

fn slow_body_head() -> Vec<u8> {
    b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\n".to_vec()
}

fn upgrade_head() -> Vec<u8> {
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        .to_vec()
}

fn slowloris_head() -> Vec<u8> {
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec()
}

/// `count` connections from the attacker's address, each sent `head` and then `trickle`
/// every few seconds. A connection the server answers or closes counts as refused and is
/// opened again (after a pause, so a refusing server is not simply hammered).
fn slow_connections(
    addr: SocketAddr,
    stop: &AtomicBool,
    tally: &Tally,
    count: usize,
    head: fn() -> Vec<u8>,
    trickle: &[u8],
) {
    let every = if trickle.len() > 1 { 3 } else { 2 };
    let mut conns: Vec<Option<(TcpStream, Instant)>> = (0..count).map(|_| None).collect();
    let mut next_trickle = Instant::now() + Duration::from_secs(every);
    while !stop.load(Ordering::Relaxed) {
        let trickle_now = Instant::now() >= next_trickle;
        if trickle_now {
            next_trickle = Instant::now() + Duration::from_secs(every);
        }
        for slot in conns.iter_mut() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            match slot {
                None => {
                    if let Some(mut stream) = connect(addr, ATTACKER, Duration::from_secs(1)) {
                        tally.sent.fetch_add(1, Ordering::Relaxed);
                        if stream.write_all(&head()).is_ok() {
                            *slot = Some((stream, Instant::now()));
                        } else {
                            tally.refused.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        tally.sent.fetch_add(1, Ordering::Relaxed);
                        tally.refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some((stream, _)) => {
                    // Has the server answered or closed?
                    let _ = stream.set_nonblocking(true);
                    let mut byte = [0u8; 1];
                    let ended = match stream.peek(&mut byte) {
                        Ok(_) => true, // an answer (a 408, 503, 400…) or EOF
                        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                    };
                    let _ = stream.set_nonblocking(false);
                    let write_failed = !ended
                        && trickle_now
                        && !trickle.is_empty()
                        && stream.write_all(trickle).is_err();
                    if ended || write_failed {
                        tally.refused.fetch_add(1, Ordering::Relaxed);
                        *slot = None;
                    }
                }
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// 6 connections that pipeline requests as fast as the server takes them and never read an
/// answer (a 1-byte receive buffer): their responses pile up in the server's send buffers.
/// A connection the server closes counts as refused and is opened again after a pause.
fn slow_readers(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let burst = "GET /static/style.css HTTP/1.1\r\nHost: x\r\n\r\n".repeat(50);
    thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let Some(stream) = connect_with(addr, ATTACKER, Duration::from_secs(1), |s| {
                        s.set_recv_buffer_size(1)
                    }) else {
                        tally.add(&Outcome::Closed);
                        thread::sleep(Duration::from_millis(200));
                        continue;
                    };
                    let mut stream = stream;
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                    while !stop.load(Ordering::Relaxed) {
                        match stream.write(burst.as_bytes()) {
                            Ok(0) => break,
                            Ok(n) => {
                                tally
                                    .sent
                                    .fetch_add((n / (burst.len() / 50)) as u64, Ordering::Relaxed);
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) => {}
                            Err(_) => break,
                        }
                    }
                    if !stop.load(Ordering::Relaxed) {
                        tally.refused.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(Duration::from_millis(200));
                    }
                }
            });
        }
    });
}

/// 50 wrong passwords for `admin` from 127.0.0.3, then the right one from the person's
/// address: a stranger must not be able to lock the account.
fn lockout(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let stranger = Ipv4Addr::new(127, 0, 0, 3);
    for _ in 0..50 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let outcome = sign_in(addr, stranger, "admin", "wrong-password");
        tally.add(&outcome);
    }
    // The owner, at another address; like a person, they try again when told the server
    // is busy (503 with `Retry-After: 2`), a few times.
    let mut busy = 0;
    let outcome = loop {
        let outcome = sign_in(addr, PERSON, "admin", ADMIN_PASSWORD);
        tally.add(&outcome);
        if outcome != Outcome::Status(503) || busy == 5 {
            break outcome;
        }
        busy += 1;
        thread::sleep(Duration::from_secs(2));
    };
    tally.note(format!(
        "the right password for admin from a clean address after 50 wrong ones elsewhere: {}{}",
        match outcome {
            Outcome::Status(303) => "signed in".to_string(),
            other => format!("NOT signed in ({other:?})"),
        },
        match busy {
            0 => String::new(),
            n => format!(" (after {n} × 503 busy, retried after Retry-After)"),
        }
    ));
}

/// 32 connections of wrong passwords as fast as the server answers, each from its own
/// rotating 127.0.x.y address, so per-address limits alone do not stop the hashing.
fn sign_in_flood(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let next = AtomicUsize::new(0);
    thread::scope(|scope| {
        for _ in 0..32 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let source = Ipv4Addr::new(127, 1 + (n / 250 % 250) as u8, (n % 250) as u8, 9);
                    let user = if n % 2 == 0 { "admin" } else { "nobody" };
                    let outcome = sign_in(addr, source, user, "wrong-password");
                    tally.add(&outcome);
                    if outcome == Outcome::Status(503) {
                        thread::sleep(Duration::from_millis(50));
                    }
                }
            });
        }
    });
}

/// 3,000 device authorizations from the attacker's address over 8 keep-alive connections.
fn authorize_burst(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let left = AtomicUsize::new(3000);
    let accepted = AtomicU64::new(0);
    thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                let mut conn = None;
                while !stop.load(Ordering::Relaxed)
                    && left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok()
                {
                    let body = "client_id=guest";
                    let request = format!(
                        "POST /oauth/device_authorize HTTP/1.1\r\nHost: x\r\nContent-Type: \
                         application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let outcome = keep_alive_request(&mut conn, addr, ATTACKER, request.as_bytes());
                    if outcome == Outcome::Status(200) {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    tally.add(&outcome);
                }
            });
        }
    });
    tally.note(format!(
        "device codes issued to one address's burst of 3,000: {}",
        accepted.load(Ordering::Relaxed)
    ));
}

/// 300 cookie-less views of the pages a stranger can reach.
fn page_views(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let paths = [
        "/oauth/device",
        "/oauth/device/BCDF-GHJK",
        "/account",
        "/login",
    ];
    let mut conn = None;
    for n in 0..300 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let request = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", paths[n % paths.len()]);
        let outcome = keep_alive_request(&mut conn, addr, ATTACKER, request.as_bytes());
        tally.add(&outcome);
    }
}

/// Malformed and smuggling requests, each on its own connection; every one must get a
/// status line, and nothing hidden behind it may be answered.
fn framing(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let hidden = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases: Vec<Vec<u8>> = vec![
        format!(
            "POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}",
            5 + hidden.len()
        )
        .into_bytes(),
        format!("POST /oauth/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{hidden}").into_bytes(),
        format!("POST /oauth/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{hidden}").into_bytes(),
        format!("POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{hidden}", hidden.len()).into_bytes(),
        format!("POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length : {}\r\n\r\n{hidden}", hidden.len()).into_bytes(),
        "GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: caf\u{e9}/1.0\r\ncf-region: S\u{e3}o Paulo\r\n\r\n".as_bytes().to_vec(),
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n", "a".repeat(70_000)).into_bytes(),
        format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)).into_bytes(),
    ];
    let mut smuggled = 0;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let case = &cases[n % cases.len()];
        n += 1;
        let Some(mut stream) = connect(addr, ATTACKER, Duration::from_secs(2)) else {
            tally.add(&Outcome::Closed);
            continue;
        };
        let _ = stream.write_all(case);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut answer = Vec::new();
        let ended = read_until_eof(&mut stream, &mut answer, Duration::from_secs(3));
        let statuses = count_status_lines(&answer);
        let outcome = match (statuses, ended) {
            (0, true) => Outcome::Silent,
            (0, false) => Outcome::NoAnswer,
            _ => Outcome::Status(first_status(&answer).unwrap_or(0)),
        };
        // The hidden request is the only one that could be answered with 200.
        if statuses > 1 || outcome == Outcome::Status(200) && n % cases.len() != 6 {
            smuggled += 1;
        }
        tally.add(&outcome);
        thread::sleep(Duration::from_millis(20));
    }
    tally.note(format!(
        "requests served from behind a framing error (smuggled): {smuggled}"
    ));
}

/// GET the sign-in page for its cookies and CSRF token, then POST the form; the status.
fn sign_in(addr: SocketAddr, source: Ipv4Addr, user: &str, password: &str) -> Outcome {
    let mut conn = None;
    let page = keep_alive_exchange(
        &mut conn,
        addr,
        source,
        b"GET /oauth/device HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let Ok((status, head, body)) = page else {
        return page.err().unwrap_or(Outcome::NoAnswer);
    };
    if status != 200 {
        return Outcome::Status(status);
    }
    let cookies: Vec<String> = head
        .lines()
        .filter_map(|l| {
            l.strip_prefix("Set-Cookie: ")
                .or(l.strip_prefix("set-cookie: "))
        })
        .filter_map(|c| c.split(';').next())
        .map(str::to_string)
        .collect();
    let Some(csrf) = hidden_input(&body, "csrf_token") else {
        return Outcome::Status(status);
    };
    let form = serde_urlencoded::to_string([
        ("csrf_token", csrf.as_str()),
        ("username", user),
        ("password", password),
        ("next", "/oauth/device"),
    ])
    .unwrap_or_default();
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nCookie: {}\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        cookies.join("; "),
        form.len()
    );
    match keep_alive_exchange(&mut conn, addr, source, request.as_bytes()) {
        Ok((status, _, _)) => Outcome::Status(status),
        Err(outcome) => outcome,
    }
}

fn hidden_input(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}

/// One request on a kept-alive connection (opened, or opened again, as needed).
fn keep_alive_request(
    conn: &mut Option<BufReader<TcpStream>>,
    addr: SocketAddr,
    source: Ipv4Addr,
    request: &[u8],
) -> Outcome {
    match keep_alive_exchange(conn, addr, source, request) {
        Ok((status, _, _)) => Outcome::Status(status),
        Err(outcome) => outcome,
    }
}

/// Sends `request` and reads one response: (status, head, body). A connection that ends
/// with no status line after a complete request is `Silent`.
fn keep_alive_exchange(
    conn: &mut Option<BufReader<TcpStream>>,
    addr: SocketAddr,
    source: Ipv4Addr,
    request: &[u8],
) -> Result<(u16, String, String), Outcome> {
    if conn.is_none() {
        let stream = connect(addr, source, Duration::from_secs(5)).ok_or(Outcome::Closed)?;
        *conn = Some(BufReader::new(stream));
    }
    let reader = conn.as_mut().ok_or(Outcome::Closed)?;
    if reader.get_mut().write_all(request).is_err() {
        *conn = None;
        return Err(Outcome::Closed);
    }
    let result = read_response(reader);
    let keep = matches!(&result, Ok((_, head, _)) if !head.to_ascii_lowercase().contains("connection: close"));
    if !keep {
        *conn = None;
    }
    result
}

fn read_response(reader: &mut BufReader<TcpStream>) -> Result<(u16, String, String), Outcome> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) if head.is_empty() => return Err(Outcome::Silent),
            Ok(0) => return Err(Outcome::Closed),
            Ok(_) if line == "\r\n" => break,
            Ok(_) => head.push_str(&line),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && head.is_empty() => {
                return Err(Outcome::Silent)
            }
            Err(_) => return Err(Outcome::NoAnswer),
        }
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(Outcome::NoAnswer)?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).map_err(|_| Outcome::Closed)?;
    Ok((status, head, String::from_utf8_lossy(&body).into_owned()))
}

/// A new connection to `/path` from `source`, and the status, within 1 s in all.
fn get_status(addr: SocketAddr, source: Ipv4Addr, path: &str) -> Option<u16> {
    let mut stream = connect(addr, source, Duration::from_secs(1))?;
    let started = Instant::now();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .ok()?;
    let mut answer = Vec::new();
    read_until_eof(
        &mut stream,
        &mut answer,
        Duration::from_secs(1).saturating_sub(started.elapsed()),
    );
    first_status(&answer)
}

/// A connection from `source` (any 127.x.y.z is this machine's loopback).
fn connect(addr: SocketAddr, source: Ipv4Addr, timeout: Duration) -> Option<TcpStream> {
    connect_with(addr, source, timeout, |_| Ok(()))
}

/// `connect`, with socket options set before connecting.
fn connect_with(
    addr: SocketAddr,
    source: Ipv4Addr,
    timeout: Duration,
    options: impl Fn(&socket2::Socket) -> std::io::Result<()>,
) -> Option<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    options(&socket).ok()?;
    socket.bind(&SocketAddr::from((source, 0)).into()).ok()?;
    socket.connect_timeout(&addr.into(), timeout).ok()?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    Some(stream)
}

/// Reads until EOF (true) or until `patience` runs out (false).
fn read_until_eof(stream: &mut TcpStream, into: &mut Vec<u8>, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn first_status(answer: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(answer);
    text.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

fn count_status_lines(answer: &[u8]) -> usize {
    let text = String::from_utf8_lossy(answer);
    text.match_indices("HTTP/1.1 ").count() + text.match_indices("HTTP/1.0 ").count()
}

/// A `/proc/<pid>/status` figure in kB (`VmRSS:`, `VmHWM:`).
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Rows in every table, and bytes of the database file and its WAL.
fn db_size(db: &Path) -> (i64, i64) {
    let bytes = [db.to_path_buf(), db.with_extension("db-wal")]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len() as i64)
        .sum();
    let rows =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()
            .and_then(|conn| {
                let tables: Vec<String> = conn
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .ok()?
                    .query_map([], |r| r.get(0))
                    .ok()?
                    .filter_map(Result::ok)
                    .collect();
                let mut total = 0i64;
                for table in tables {
                    let count: i64 = conn
                        .query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
                            r.get(0)
                        })
                        .ok()?;
                    total += count;
                }
                Some(total)
            })
            .unwrap_or(0);
    (rows, bytes)
}
