//! A flood of failed sign-ins against a release build, measuring what it costs the server:
//! peak memory (VmHWM from /proc/<pid>/status) and whether `/healthz` still answers within
//! 1 s. Issue #12, item 5. Loopback only, bounded in connections and time.
//!
//!     cargo build --release && cargo run --release --example signin_flood -- \
//!         [--bin target/release/devicegate] [--connections 32] [--secs 20] \
//!         [--workers N] [--one-address]
//!
//! It starts `<bin> serve` on 127.0.0.1 with a temporary database, opens `--connections`
//! keep-alive connections, each of which loads the sign-in page once (cookie + CSRF token)
//! and then posts wrong passwords for random user names as fast as it is answered. By
//! default the server runs with `--trust-proxy` and each attempt carries a random
//! `X-Forwarded-For` address: an attacker with many addresses, so that per-address limits
//! do not stop the attempts and every one costs a password verification (the worst case
//! for memory). `--one-address` leaves that out (then the per-address limit answers most
//! attempts without a verification). Prints the answers by status, the peak and final
//! RSS, and the share of `/healthz` probes (one every 100 ms) answered within 1 s.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Options {
    bin: String,
    connections: usize,
    secs: u64,
    workers: Option<usize>,
    one_address: bool,
}

fn parse() -> Options {
    let mut opt = Options {
        bin: "target/release/devicegate".into(),
        connections: 32,
        secs: 20,
        workers: None,
        one_address: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--bin" => opt.bin = value(),
            "--connections" => opt.connections = value().parse().expect("--connections N"),
            "--secs" => opt.secs = value().parse().expect("--secs N"),
            "--workers" => opt.workers = Some(value().parse().expect("--workers N")),
            "--one-address" => {
                opt.one_address = true;
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    opt.connections = opt.connections.clamp(1, 256);
    opt.secs = opt.secs.clamp(1, 300);
    opt
}

fn main() {
    let opt = parse();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("flood.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(&opt.bin);
    command
        .arg("--db")
        .arg(&db)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--log-level", "error"]);
    if let Some(workers) = opt.workers {
        command.args(["--workers", &workers.to_string()]);
    }
    if !opt.one_address {
        command.arg("--trust-proxy");
    }
    let mut server = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server");
    let pid = server.id();
    let started = Instant::now();
    while ureq::get(&format!("{base}/healthz")).call().is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let idle_rss = proc_status_kib(pid, "VmRSS:");

    let stop = Arc::new(AtomicBool::new(false));
    let statuses = Arc::new(Mutex::new(std::collections::BTreeMap::<String, u64>::new()));
    let peak_rss = Arc::new(AtomicU64::new(idle_rss));
    let (probes, probes_fast) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let slowest_probe = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();

    // Memory: sample VmRSS every 50 ms (VmHWM, the kernel's own peak, is read at the end).
    {
        let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak_rss));
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(proc_status_kib(pid, "VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    // Liveness: one /healthz every 100 ms, each on a new connection, 5 s timeout.
    {
        let (stop, base) = (Arc::clone(&stop), base.clone());
        let (probes, fast, slowest) = (
            Arc::clone(&probes),
            Arc::clone(&probes_fast),
            Arc::clone(&slowest_probe),
        );
        threads.push(std::thread::spawn(move || {
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(5))
                .max_idle_connections(0)
                .build();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let ok = agent.get(&format!("{base}/healthz")).call().is_ok();
                let took = sent.elapsed();
                probes.fetch_add(1, Ordering::Relaxed);
                if ok && took <= Duration::from_secs(1) {
                    fast.fetch_add(1, Ordering::Relaxed);
                }
                slowest.fetch_max(
                    u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                std::thread::sleep(Duration::from_millis(100).saturating_sub(took));
            }
        }));
    }
    // The flood.
    for n in 0..opt.connections {
        let (stop, base, statuses) = (Arc::clone(&stop), base.clone(), Arc::clone(&statuses));
        let forwarded = !opt.one_address;
        threads.push(std::thread::spawn(move || {
            flood(n, &base, forwarded, &stop, &statuses)
        }));
    }
    std::thread::sleep(Duration::from_secs(opt.secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let hwm = proc_status_kib(pid, "VmHWM:");
    let rss_after = proc_status_kib(pid, "VmRSS:");
    let _ = server.kill();
    let _ = server.wait();

    let statuses = statuses.lock().expect("statuses");
    let total: u64 = statuses.values().sum();
    println!(
        "sign-in flood: {} connections, {} s, workers {}, {}",
        opt.connections,
        opt.secs,
        opt.workers
            .map_or_else(|| "default".to_string(), |w| w.to_string()),
        if opt.one_address {
            "one address"
        } else {
            "random X-Forwarded-For per attempt"
        }
    );
    let by_status: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    println!(
        "  answers: {total} ({:.0}/s) — {}",
        total as f64 / opt.secs as f64,
        by_status.join(", ")
    );
    println!(
        "  RSS: idle {:.1} MB, peak {:.1} MB (VmHWM {:.1} MB), after {:.1} MB",
        mb(idle_rss),
        mb(peak_rss.load(Ordering::Relaxed)),
        mb(hwm),
        mb(rss_after)
    );
    let (probes, fast) = (
        probes.load(Ordering::Relaxed),
        probes_fast.load(Ordering::Relaxed),
    );
    println!(
        "  /healthz within 1 s: {fast}/{probes} ({:.1}%), slowest {} ms",
        100.0 * fast as f64 / probes.max(1) as f64,
        slowest_probe.load(Ordering::Relaxed)
    );
}

/// One connection's flood: the page once for a session and its CSRF token, then wrong
/// passwords until told to stop. Every answer is counted by status ("error" when none).
fn flood(
    n: usize,
    base: &str,
    forwarded: bool,
    stop: &AtomicBool,
    statuses: &Mutex<std::collections::BTreeMap<String, u64>>,
) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .redirects(0)
        .build();
    let (cookie, csrf) = loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(page) = agent.get(&format!("{base}/oauth/device")).call() {
            let cookie = page
                .header("set-cookie")
                .and_then(|c| c.split(';').next())
                .unwrap_or_default()
                .to_string();
            let body = page.into_string().unwrap_or_default();
            if let Some(csrf) = field(&body, "csrf_token") {
                break (cookie, csrf);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut attempt: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        attempt += 1;
        // Spread over names and addresses, deterministic per connection and attempt.
        let seed = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ attempt;
        let name = if attempt % 4 == 0 {
            "admin".to_string()
        } else {
            format!("user{}", seed % 10_000)
        };
        let mut request = agent.post(&format!("{base}/login")).set("Cookie", &cookie);
        if forwarded {
            let ip = format!(
                "10.{}.{}.{}",
                (seed >> 16) % 256,
                (seed >> 8) % 256,
                seed % 254 + 1
            );
            request = request.set("X-Forwarded-For", &ip);
        }
        let key = match request.send_form(&[
            ("csrf_token", &csrf),
            ("username", &name),
            ("password", "not-the-password"),
        ]) {
            Ok(r) => r.status().to_string(),
            Err(ureq::Error::Status(status, _)) => status.to_string(),
            Err(_) => "error".to_string(),
        };
        *statuses.lock().expect("statuses").entry(key).or_default() += 1;
    }
}

/// A hidden field's value in a page (the flood only needs the CSRF token).
fn field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    Some(html[start..].split('"').next()?.to_string())
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let file = match std::fs::File::open(format!("/proc/{pid}/status")) {
        Ok(file) => file,
        Err(_) => return 0,
    };
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix(field)
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
