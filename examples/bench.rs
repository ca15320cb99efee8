//! devicegate's benchmark: a release build of the server on a temporary database, filled
//! with a realistic population, driven over HTTP/1.1 keep-alive on 127.0.0.1 by Debian's
//! `wrk`, beside the HTTP ceiling of our own stack (the same listener and worker pool
//! answering a fixed 13-byte body), so figures are ratios as well as numbers.
//!
//!     cargo run --release --example bench -- [options; --help lists them]
//!
//! Scenarios: `poll` (device-code token requests spread over the live pending codes,
//! ignoring the interval on purpose, so the server answers authorization_pending and
//! slow_down), `authorize` (a device authorization, one durable write each), `page` (the
//! consent page: a signed-in session submits a pending code), `ceiling`, `poll-100k` (peak RSS with 100,000 live
//! codes), `poll+idle` (poll while 1,000 idle connections are open) and `instructions`
//! (instructions per request under callgrind, the one figure that does not drift with the
//! machine; needs valgrind) and `issue` (token issuance: an approval and the redemption
//! that follows, opaque tokens vs an ID token signed RS256 or EdDSA vs a JWT access token,
//! one at a time, plus the cost of one signature in-process), and `scale-out` (poll and
//! authorize side by side on SQLite, on PostgreSQL with one devicegate, and on two
//! devicegates sharing one PostgreSQL database, their rates summed; PostgreSQL needs the
//! `postgres` feature and `--postgres URL` or `DEVICEGATE_BENCH_POSTGRES`, else its rows
//! print as skipped with the reason; each run gets a fresh database, dropped after it).
//! In every round,
//! each of poll, authorize and page runs on a fresh server right after a ceiling run of its
//! own; its ratio is to that ceiling, and the table shows medians over rounds. Every load is
//! bounded in time and only touches 127.0.0.1. `BENCH_SERVER_LOG=<file>` keeps the
//! server's log; `BENCH_PERF=<dir>` records a `perf` profile of the server per wrk run.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const USAGE: &str = "usage: cargo run --release --example bench -- [--seconds 8] [--connections 64]
       [--rounds 3] [--codes 10000] [--rss-codes 100000] [--workers N] [--idle 1000]
       [--instruction-requests 1000] [--issues 300] [--postgres postgres://user@host:port/db]
       [--only poll,authorize,page,poll-100k,poll+idle,instructions,issue,scale-out]
--postgres (or DEVICEGATE_BENCH_POSTGRES): a PostgreSQL server the bench may create and drop
databases on (needs --features postgres); the URL's database is only used to connect.";

const METRICS_TOKEN: &str = "bench-metrics-token-0123456789";

struct Options {
    seconds: u64,
    connections: u64,
    rounds: usize,
    codes: usize,
    rss_codes: usize,
    workers: usize,
    idle: usize,
    /// Requests per scenario counted by callgrind.
    instruction_requests: usize,
    /// Token issuances per variant in the `issue` scenario.
    issues: usize,
    /// Scenarios to run (`--only poll,page`); empty: all of them.
    only: Vec<String>,
    /// A PostgreSQL server for the scale-out rows (`--postgres`, `DEVICEGATE_BENCH_POSTGRES`).
    postgres: Option<String>,
}

impl Options {
    fn runs(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

#[derive(Debug, Clone, Default)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    socket_errors: u64,
    server_errors: u64,
    peak_rss_kb: u64,
    peak_threads: u64,
    /// The server's CPU time (user + system) per request answered, in microseconds.
    cpu_us_per_request: f64,
    /// PostgreSQL's CPU time per request answered (its processes for the bench database
    /// and its background processes), in microseconds; `None` when not on PostgreSQL or
    /// its processes are not on this machine.
    db_cpu_us_per_request: Option<f64>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("__serve") => return serve(&args[2], &args[3]),
        Some("__ceiling") => return ceiling(&args[2]),
        _ => {}
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    let opt = parse(&args[1..]);
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk is missing: apt-get install wrk");
        std::process::exit(2);
    }
    let work = tempfile::tempdir().expect("temp dir");
    // PostgreSQL, for the scale-out rows (and a column of instructions per request), or the
    // reason there is none.
    let cluster = pg::Cluster::connect(opt.postgres.as_deref());
    println!(
        "devicegate bench: {} rounds × {} s, {} connections, {} live codes, {} workers, {} cores (wrk on the same machine)",
        opt.rounds,
        opt.seconds,
        opt.connections,
        opt.codes,
        opt.workers,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    match &cluster {
        Ok(cluster) => println!("PostgreSQL: {}", cluster.settings()),
        Err(why) if opt.runs("scale-out") => println!("PostgreSQL rows skipped: {why}"),
        Err(_) => {}
    }
    let scale_out = opt.runs("scale-out");
    let mut scale_table: Vec<ScaleRow> = Vec::new();
    let mut table: Vec<(&str, Vec<Run>, Vec<f64>)> = vec![
        ("ceiling", vec![], vec![]),
        ("poll", vec![], vec![]),
        ("authorize", vec![], vec![]),
        ("page", vec![], vec![]),
    ];
    // Each scenario runs on a fresh server seeded alike, right after a ceiling run of its
    // own, so no scenario inherits another's rows and each ratio compares loads measured
    // back to back.
    for round in 0..opt.rounds {
        for name in ["poll", POLL_READ, "authorize", "page"] {
            let in_main = opt.runs(name) && name != POLL_READ;
            // The default run without PostgreSQL keeps its length: the poll that reads the
            // database compares backends, so it runs with PostgreSQL or when asked for.
            let in_scale = scale_out
                && name != "page"
                && (name != POLL_READ || cluster.is_ok() || !opt.only.is_empty());
            if !in_main && !in_scale {
                continue;
            }
            let ceiling_run = {
                let (child, addr) = spawn(&[], &["__ceiling", &opt.workers.to_string()]);
                let run = wrk(&opt, &addr, None, &child);
                stop(child);
                run
            };
            let run = scenario(&opt, work.path(), &format!("{name}{round}"), name);
            let ratio = run.rps / ceiling_run.rps;
            if in_scale {
                scale_push(&mut scale_table, name, "ceiling", ceiling_run.clone(), 1.0);
                scale_push(&mut scale_table, name, SQLITE, run.clone(), ratio);
                if let Ok(cluster) = &cluster {
                    for (backend, instances, durable) in PG_ROWS {
                        // Commits without waiting for the disk: authorize only, to show
                        // what the WAL flush per commit costs (polls hardly write).
                        if !durable && name != "authorize" {
                            continue;
                        }
                        let run = scenario_pg(&opt, work.path(), cluster, name, instances, durable);
                        let ratio = run.rps / ceiling_run.rps;
                        scale_push(&mut scale_table, name, backend, run, ratio);
                    }
                }
            }
            if in_main {
                table[0].1.push(ceiling_run.clone());
                table[0].2.push(1.0);
                let row = table.iter_mut().find(|r| r.0 == name).expect("row");
                row.2.push(ratio);
                row.1.push(run);
            }
        }
        println!("round {} done", round + 1);
    }
    table.retain(|(name, runs, _)| !runs.is_empty() || *name == "ceiling");
    let main_table = table.len() > 1;
    // Peak RSS with many live codes, and serving while idle connections are held open.
    let mut extra_rows = Vec::new();
    if opt.runs("poll-100k") || opt.runs("poll+idle") {
        extra_rows = rss_and_idle(&opt, work.path());
    }
    if main_table || !extra_rows.is_empty() {
        print_table(&opt, &table, &extra_rows);
    }
    if scale_out {
        print_scale_table(&opt, &scale_table, cluster.as_ref().err());
    }
    if opt.runs("instructions") {
        print_instructions(opt.instruction_requests, work.path(), cluster.as_ref().ok());
    }
    if opt.runs("issue") {
        print_issuance(&opt, work.path());
    }
}

/// One kind of client the `issue` scenario redeems codes for.
struct IssueVariant {
    name: &'static str,
    client_id: &'static str,
    scope: &'static str,
    id_token_alg: &'static str,
    access_token_format: &'static str,
}

const ISSUE_VARIANTS: [IssueVariant; 4] = [
    IssueVariant {
        name: "opaque tokens, no ID token",
        client_id: "bench-opaque",
        scope: "read",
        id_token_alg: "RS256",
        access_token_format: "opaque",
    },
    IssueVariant {
        name: "+ ID token, RS256",
        client_id: "bench-rs256",
        scope: "openid read",
        id_token_alg: "RS256",
        access_token_format: "opaque",
    },
    IssueVariant {
        name: "+ ID token, EdDSA",
        client_id: "bench-eddsa",
        scope: "openid read",
        id_token_alg: "EdDSA",
        access_token_format: "opaque",
    },
    IssueVariant {
        name: "+ ID token RS256, JWT access token",
        client_id: "bench-jwt",
        scope: "openid read",
        id_token_alg: "RS256",
        access_token_format: "jwt",
    },
];

/// Token issuance, one at a time on a fresh server: for each variant, `opt.issues` codes
/// are requested (untimed), approved by the operator through the library on the same
/// database (timed: the approval), then redeemed by the device's poll over HTTP (timed:
/// the redemption, with the server's CPU per redemption). Then the cost of one signature
/// through the server's own signing path, in this process.
fn print_issuance(opt: &Options, work: &Path) {
    use devicegate::protocol::approval::{decide, Actor, Decision};
    let db = work.join("issue.db");
    let (child, addr) = spawn_server(&[], &db, opt.workers);
    let store = devicegate::store::Store::open(&db).expect("store");
    let hash = devicegate::secrets::hash_password("bench-password").expect("hash");
    let user = store.create_user("issuer", &hash, 0).expect("user");
    for v in &ISSUE_VARIANTS {
        let scopes: Vec<String> = ["openid", "read"].map(String::from).to_vec();
        let grants = vec![
            "urn:ietf:params:oauth:grant-type:device_code".to_string(),
            "refresh_token".to_string(),
        ];
        store
            .create_client(
                &devicegate::store::NewClient {
                    client_id: v.client_id,
                    name: v.name,
                    secret_hash: None,
                    scopes: &scopes,
                    grant_types: &grants,
                    device_code_ttl: None,
                    poll_interval: None,
                },
                0,
            )
            .expect("client");
        store
            .update_client(
                v.client_id,
                &devicegate::store::ClientChanges {
                    access_token_format: Some(v.access_token_format),
                    id_token_signed_response_alg: Some(v.id_token_alg),
                    ..Default::default()
                },
            )
            .expect("client settings");
    }
    let agent = ureq::Agent::new();
    let base = format!("http://{addr}");
    println!(
        "\n| issuance ({} per variant, one at a time) | approval p50 | redemption p50 | p99 | redemptions/s | server CPU/redemption | response bytes |",
        opt.issues
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for v in &ISSUE_VARIANTS {
        let codes: Vec<(String, String)> = (0..opt.issues)
            .map(|_| {
                let body: serde_json::Value = agent
                    .post(&format!("{base}/oauth/device_authorize"))
                    .send_form(&[("client_id", v.client_id), ("scope", v.scope)])
                    .expect("device authorization")
                    .into_json()
                    .expect("json");
                (
                    body["device_code"].as_str().expect("device_code").into(),
                    body["user_code"].as_str().expect("user_code").into(),
                )
            })
            .collect();
        let clock = devicegate::Clock::system();
        let mut approvals = Vec::with_capacity(codes.len());
        for (_, user_code) in &codes {
            let started = std::time::Instant::now();
            decide(
                &store,
                user_code,
                Decision::Approve { user_id: user },
                Actor::Operator,
                clock.now(),
            )
            .expect("approve");
            approvals.push(started.elapsed().as_secs_f64() * 1e6);
        }
        let mut redemptions = Vec::with_capacity(codes.len());
        let mut bytes = 0;
        let cpu_before = cpu_seconds(child.id());
        let all = std::time::Instant::now();
        for (device_code, _) in &codes {
            let started = std::time::Instant::now();
            let body = agent
                .post(&format!("{base}/oauth/token"))
                .send_form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("client_id", v.client_id),
                    ("device_code", device_code),
                ])
                .expect("redemption")
                .into_string()
                .expect("body");
            redemptions.push(started.elapsed().as_secs_f64() * 1000.0);
            bytes = body.len();
        }
        let elapsed = all.elapsed().as_secs_f64();
        let cpu = cpu_seconds(child.id()) - cpu_before;
        let p99 = {
            let mut sorted = redemptions.clone();
            sorted.sort_by(|a, b| a.total_cmp(b));
            sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
        };
        println!(
            "| {} | {:.0} µs | {:.2} ms | {:.2} ms | {:.0} | {:.0} µs | {} |",
            v.name,
            median(approvals),
            median(redemptions),
            p99,
            codes.len() as f64 / elapsed,
            cpu * 1e6 / codes.len() as f64,
            bytes
        );
    }
    stop(child);
    print_signing_cost(opt.issues.max(100), work);
}

/// Microseconds per signature through the server's signing path (`keys::KeyRing`), here
/// in one thread: an ID token's claims signed `n` times with each algorithm.
fn print_signing_cost(n: usize, work: &Path) {
    use devicegate::keys::{ensure_first_keys, Alg, KeyRing};
    let store = devicegate::store::Store::open(&work.join("signing.db")).expect("store");
    ensure_first_keys(&store, 0).expect("keys");
    let ring = KeyRing::new(0, 1, Duration::from_secs(1), 0);
    let claims = serde_json::json!({
        "iss": "https://auth.example.com", "sub": "k3v9q0x2m8c4b7n1z5r6t0y2w4", "aud": "kubelogin",
        "exp": 1_900_000_000, "iat": 1_899_996_400, "auth_time": 1_899_996_000, "azp": "kubelogin",
        "preferred_username": "alice",
    });
    println!("\n| signature (one thread, {n} each) | µs per signature |");
    println!("|---|---:|");
    for alg in Alg::ALL {
        let turn = ring.turn().expect("turn");
        turn.sign(&store, alg, "JWT", &claims, 1).expect("warm-up");
        let started = std::time::Instant::now();
        for _ in 0..n {
            turn.sign(&store, alg, "JWT", &claims, 1).expect("sign");
        }
        println!(
            "| {} | {:.0} |",
            alg.as_str(),
            started.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
}

/// Instructions per request inside the handler (`serve_one` and all it calls: parsing,
/// SQLite, rendering, writing the response), counted by callgrind over sequential requests.
/// Requests/s on this machine move ±20% between runs; this figure is the same on every
/// run of the same build, so small changes show. Kernel time is not in it.
/// With PostgreSQL, a second column: the same requests on a fresh PostgreSQL database
/// (the client library's work on the worker's thread is inside; PostgreSQL's own is not).
fn print_instructions(requests: usize, work: &Path, cluster: Option<&pg::Cluster>) {
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("\n(valgrind is missing: apt-get install valgrind for instructions per request)");
        return;
    }
    match cluster {
        None => {
            println!("\n| scenario | instructions per request (callgrind, {requests} sequential requests, inside the handler) |");
            println!("|---|---:|");
        }
        Some(_) => {
            println!("\n| scenario | instructions per request, SQLite (callgrind, {requests} sequential requests, inside the handler) | PostgreSQL (the client's side only) |");
            println!("|---|---:|---:|");
        }
    }
    for name in ["poll", "authorize", "page"] {
        let db = work.join(format!("callgrind-{name}.db"));
        let count = instructions_per_request(name, requests, work, &db);
        match cluster {
            None => println!("| {name} | {:.1}k |", count / 1000.0),
            Some(cluster) => {
                let fresh = cluster.fresh().expect("a fresh PostgreSQL database");
                let on_pg = instructions_per_request(name, requests, work, Path::new(&fresh.url));
                println!(
                    "| {name} | {:.1}k | {:.1}k |",
                    count / 1000.0,
                    on_pg / 1000.0
                );
            }
        }
    }
}

fn instructions_per_request(name: &str, requests: usize, work: &Path, db: &Path) -> f64 {
    let out = work.join(format!("callgrind-{name}.out"));
    let (child, addr) = spawn_server(
        &[
            "valgrind",
            "--tool=callgrind",
            "--toggle-collect=*serve_one*",
            &format!("--callgrind-out-file={}", out.display()),
        ],
        db,
        4,
    );
    let seeded = seed(&addr, 200);
    let cookie = (name == "page").then(|| sign_in(&addr, db));
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let base = format!("http://{addr}");
    let one = |i: usize| {
        let n = i % seeded.device_codes.len();
        let response = match name {
            "poll" => agent.post(&format!("{base}/oauth/token")).send_form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", "guest"),
                ("device_code", &seeded.device_codes[n]),
            ]),
            "authorize" => agent
                .post(&format!("{base}/oauth/device_authorize"))
                .send_form(&[("client_id", "guest")]),
            _ => {
                let (cookie, csrf) = cookie.as_ref().expect("signed in");
                agent
                    .post(&format!("{base}/oauth/device"))
                    .set("Cookie", cookie)
                    .send_form(&[("csrf_token", csrf), ("user_code", &seeded.user_codes[n])])
            }
        };
        match response {
            Ok(r) | Err(ureq::Error::Status(_, r)) => {
                let _ = r.into_string();
            }
            Err(e) => panic!("{name}: {e}"),
        }
    };
    (0..100).for_each(one);
    let control = |flag: &str| {
        Command::new("callgrind_control")
            .args([flag, &child.id().to_string()])
            .output()
            .expect("callgrind_control");
    };
    control("-z");
    (0..requests).for_each(one);
    control("-d");
    stop(child);
    // The dump asked for above is `<out>.1`; its `summary:` line is the instruction count.
    let dump = std::fs::read_to_string(format!("{}.1", out.display())).expect("callgrind dump");
    let total: f64 = dump
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("instruction total");
    // `--toggle-collect` finds `serve_one` by its symbol: a stripped build (the release
    // profile) collects nothing.
    assert!(
        total > 0.0,
        "callgrind counted nothing inside serve_one: the binary has no symbols; build the \
         bench with `--profile profiling` (cargo run --profile profiling --example bench)"
    );
    total / requests as f64
}

/// One load of `name` (poll, `POLL_READ`, authorize or page) on a fresh server with `opt.codes` live
/// codes in `<work>/<db_name>.db`.
fn scenario(opt: &Options, work: &Path, db_name: &str, name: &str) -> Run {
    let db = work.join(format!("{db_name}.db"));
    let (child, addr) = spawn_server(&[], &db, opt.workers);
    let seeded = seed(&addr, opt.codes);
    let script = match name {
        "poll" => lua_poll(work, &seeded),
        POLL_READ => lua_poll_unknown(work, &seeded),
        "authorize" => lua_authorize(work),
        _ => {
            let (cookie, csrf) = sign_in(&addr, &db);
            lua_page(work, &seeded, &cookie, &csrf)
        }
    };
    let run = wrk(opt, &addr, Some(&script), &child);
    stop(child);
    run
}

/// One load of `name` (poll, `POLL_READ` or authorize) on a fresh PostgreSQL database served by
/// `instances` devicegate processes at once (each migrates the schema itself, as in
/// production), seeded with `opt.codes` live codes through the first. With two, the load
/// is split evenly between them (`wrk_all`) and the rates are summed.
fn scenario_pg(
    opt: &Options,
    work: &Path,
    cluster: &pg::Cluster,
    name: &str,
    instances: usize,
    durable: bool,
) -> Run {
    let fresh = cluster.fresh().expect("a fresh PostgreSQL database");
    if !durable {
        cluster
            .set(&fresh.name, "synchronous_commit", "off")
            .expect("ALTER DATABASE");
    }
    let servers: Vec<(Child, String)> = (0..instances)
        .map(|_| spawn_server(&[], Path::new(&fresh.url), opt.workers))
        .collect();
    let seeded = seed(&servers[0].1, opt.codes);
    let script = match name {
        "poll" => lua_poll(work, &seeded),
        POLL_READ => lua_poll_unknown(work, &seeded),
        _ => lua_authorize(work),
    };
    let targets: Vec<(&str, &Child)> = servers.iter().map(|(c, a)| (a.as_str(), c)).collect();
    let run = wrk_all(opt, &targets, Some(&script), Some((cluster, &fresh.name)));
    for (child, _) in servers {
        stop(child);
    }
    run
}

/// The scale-out scenario in which every poll reads the database (`lua_poll_unknown`).
const POLL_READ: &str = "poll, each reading the db";

/// The scale-out rows: SQLite, PostgreSQL with one devicegate, two devicegates on one
/// PostgreSQL database.
const SQLITE: &str = "SQLite";
const PG_ONE: &str = "PostgreSQL, 1 instance";
const PG_TWO: &str = "PostgreSQL, 2 instances (sum)";
const PG_ASYNC: &str = "PostgreSQL, 1 instance, synchronous_commit off";
/// (row, devicegate instances, commits wait for the WAL flush).
const PG_ROWS: [(&str, usize, bool); 3] =
    [(PG_ONE, 1, true), (PG_TWO, 2, true), (PG_ASYNC, 1, false)];

/// (scenario, backend, runs, ratios to the ceiling measured just before each).
type ScaleRow = (&'static str, &'static str, Vec<Run>, Vec<f64>);

fn scale_push(
    rows: &mut Vec<ScaleRow>,
    scenario: &'static str,
    backend: &'static str,
    run: Run,
    ratio: f64,
) {
    match rows.iter_mut().find(|r| r.0 == scenario && r.1 == backend) {
        Some(row) => {
            row.2.push(run);
            row.3.push(ratio);
        }
        None => rows.push((scenario, backend, vec![run], vec![ratio])),
    }
}

fn print_scale_table(opt: &Options, rows: &[ScaleRow], skipped: Option<&String>) {
    println!();
    println!("| scenario | backend | requests/s | p50 | p99 | socket errors | 5xx | server CPU/req | PostgreSQL CPU/req | vs ceiling |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for scenario in ["poll", POLL_READ, "authorize"] {
        for (_, backend, runs, ratios) in rows.iter().filter(|r| r.0 == scenario) {
            let run = median_run(runs);
            println!(
                "| {scenario} | {backend} | {:.0} | {:.2} ms | {:.2} ms | {} | {} | {:.1} µs | {} | {:.0}% |",
                run.rps,
                run.p50_ms,
                run.p99_ms,
                run.socket_errors,
                run.server_errors,
                run.cpu_us_per_request,
                run.db_cpu_us_per_request
                    .map_or("–".to_string(), |us| format!("{us:.1} µs")),
                median(ratios.clone()) * 100.0
            );
        }
        if let Some(why) = skipped {
            for backend in [PG_ONE, PG_TWO] {
                println!("| {scenario} | {backend} | skipped: {why} | | | | | | | |");
            }
        }
    }
    println!(
        "\nmedians of {} rounds; each ratio is to the ceiling (one listener, {} workers) measured just before it; two instances: \
         the load split evenly between them ({} connections each), rates summed, p50/p99 the worse of the two, \
         server CPU both processes together per request",
        opt.rounds,
        opt.workers,
        (opt.connections / 2).max(1)
    );
}

/// The `poll-100k` and `poll+idle` rows: (name, run).
fn rss_and_idle(opt: &Options, work: &Path) -> Vec<(String, Run)> {
    let db = work.join("rss.db");
    let (child, addr) = spawn_server(&[], &db, opt.workers);
    let seeded = seed(&addr, opt.rss_codes);
    let poll = lua_poll(work, &seeded);
    let rss_run = wrk(opt, &addr, Some(&poll), &child);
    let idle: Vec<_> = (0..opt.idle)
        .map_while(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    let idle_count = idle.len();
    let idle_run = wrk(opt, &addr, Some(&poll), &child);
    drop(idle);
    stop(child);
    vec![
        (format!("poll, {} live codes", opt.rss_codes), rss_run),
        (format!("poll + {idle_count} idle connections"), idle_run),
    ]
}

type Row<'a> = (&'a str, Vec<Run>, Vec<f64>);

fn print_table(opt: &Options, table: &[Row<'_>], extra_rows: &[(String, Run)]) {
    println!();
    println!("| scenario | requests/s | p50 | p99 | socket errors | 5xx | peak RSS | threads | server CPU/req | vs ceiling |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, runs, ratios) in table {
        print_row(name, &median_run(runs), median(ratios.clone()));
    }
    let ceiling_rps = median(table[0].1.iter().map(|r| r.rps).collect());
    for (name, run) in extra_rows {
        let ratio = if ceiling_rps > 0.0 {
            run.rps / ceiling_rps
        } else {
            0.0
        };
        print_row(name, run, ratio);
    }
    println!("\nmedians of {} rounds; ratios are per run (scenario ÷ the ceiling measured just before it), then the median", opt.rounds);
}

fn parse(args: &[String]) -> Options {
    let mut opt = Options {
        seconds: 8,
        connections: 64,
        rounds: 3,
        codes: 10_000,
        rss_codes: 100_000,
        workers: devicegate::config::default_workers(),
        idle: 1000,
        instruction_requests: 1000,
        issues: 300,
        only: Vec::new(),
        postgres: std::env::var("DEVICEGATE_BENCH_POSTGRES")
            .ok()
            .filter(|url| !url.is_empty()),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || -> u64 {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--seconds" => opt.seconds = number().clamp(1, 60),
            "--connections" => opt.connections = number().clamp(1, 1000),
            "--rounds" => opt.rounds = number().clamp(0, 10) as usize,
            "--codes" => opt.codes = number() as usize,
            "--rss-codes" => opt.rss_codes = number() as usize,
            "--workers" => opt.workers = number() as usize,
            "--idle" => opt.idle = number() as usize,
            "--instruction-requests" => {
                opt.instruction_requests = number().clamp(1, 100_000) as usize
            }
            "--issues" => opt.issues = number().clamp(10, 10_000) as usize,
            "--only" => opt.only = value.split(',').map(str::to_string).collect(),
            "--postgres" => opt.postgres = Some(value.clone()),
            other => panic!("unknown option {other}"),
        }
    }
    opt
}

/// Child mode: the real server, in-process, on a fresh database.
fn serve(db: &str, workers: &str) {
    // The server's default: one log line per request (written to /dev/null here, or to
    // BENCH_SERVER_LOG when set).
    devicegate::logging::init(log::LevelFilter::Info);
    let config = devicegate::Config {
        db_path: PathBuf::from(db),
        listen: "127.0.0.1:0".into(),
        workers: workers.parse().unwrap_or(8),
        metrics_token: Some(METRICS_TOKEN.into()),
        // Every request comes from 127.0.0.1 for the guest client: the limits on device
        // authorization run (their cost is measured) at a rate they never refuse.
        authorize_limit_per_address: devicegate::config::MAX_AUTHORIZE_LIMIT,
        authorize_limit_per_client: devicegate::config::MAX_AUTHORIZE_LIMIT,
        // All load comes from 127.0.0.1: the per-address cap would refuse `--idle 1000`.
        max_connections_per_ip: 0,
        ..devicegate::Config::default()
    };
    let server = devicegate::Server::bind(config).expect("bind");
    println!("listening on {}", server.local_addr());
    std::io::stdout().flush().ok();
    server.run().expect("run");
}

/// Child mode: the ceiling, the same listener and worker pool with a fixed answer.
fn ceiling(workers: &str) {
    let config = devicegate::Config {
        listen: "127.0.0.1:0".into(),
        workers: workers.parse().unwrap_or(8),
        max_connections_per_ip: 0,
        ..devicegate::Config::default()
    };
    let server = std::sync::Arc::new(devicegate::server::listen(&config).expect("listen"));
    let addr = server.server_addr().to_ip().expect("an IP listener");
    println!("listening on {addr}");
    std::io::stdout().flush().ok();
    let threads: Vec<_> = (0..config.workers)
        .map(|_| {
            let server = std::sync::Arc::clone(&server);
            std::thread::spawn(move || {
                while let Ok(rq) = server.recv() {
                    let _ = rq.respond(tiny_http::Response::from_data(&b"Hello, world!"[..]));
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

/// The real server (`__serve`) on `db`, run by `wrapper` (e.g. valgrind) when not empty.
fn spawn_server(wrapper: &[&str], db: &Path, workers: usize) -> (Child, String) {
    let db = db.to_str().expect("utf-8 path");
    spawn(wrapper, &["__serve", db, &workers.to_string()])
}

/// This binary with `args`, run by `wrapper` when it is not empty.
fn spawn(wrapper: &[&str], args: &[&str]) -> (Child, String) {
    let exe = std::env::current_exe().expect("exe");
    let mut command = match wrapper.split_first() {
        Some((program, wrapper_args)) => {
            let mut c = Command::new(program);
            c.args(wrapper_args).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let mut child = command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(match std::env::var_os("BENCH_SERVER_LOG") {
            Some(path) => std::fs::File::create(path)
                .map(Stdio::from)
                .unwrap_or(Stdio::null()),
            None => Stdio::null(),
        })
        .spawn()
        .expect("spawn server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read address");
    let addr = line.trim().trim_start_matches("listening on ").to_string();
    (child, addr)
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

struct Seeded {
    device_codes: Vec<String>,
    user_codes: Vec<String>,
}

/// Creates `n` live pending codes through the real endpoint, 8 keep-alive clients at once.
fn seed(addr: &str, n: usize) -> Seeded {
    let url = format!("http://{addr}/oauth/device_authorize");
    let per_thread = n.div_ceil(8);
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let url = url.clone();
            let count = per_thread.min(n.saturating_sub(t * per_thread));
            std::thread::spawn(move || {
                let agent = ureq::Agent::new();
                (0..count)
                    .map(|_| {
                        let body: serde_json::Value = agent
                            .post(&url)
                            .send_form(&[("client_id", "guest")])
                            .expect("device authorization")
                            .into_json()
                            .expect("json");
                        (
                            body["device_code"]
                                .as_str()
                                .expect("device_code")
                                .to_string(),
                            body["user_code"].as_str().expect("user_code").to_string(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seeded = Seeded {
        device_codes: vec![],
        user_codes: vec![],
    };
    for h in handles {
        for (d, u) in h.join().expect("seed thread") {
            seeded.device_codes.push(d);
            seeded.user_codes.push(u);
        }
    }
    seeded
}

/// A signed-in session cookie, through the real sign-in form, and the session's CSRF token.
fn sign_in(addr: &str, db: &Path) -> (String, String) {
    let store = devicegate::store::Store::open(db).expect("store");
    let hash = devicegate::secrets::hash_password("bench-password").expect("hash");
    let _ = store.create_user("bench", &hash, 0);
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let page = agent
        .get(&format!("http://{addr}/oauth/device"))
        .call()
        .expect("page");
    let cookie = page
        .header("set-cookie")
        .expect("cookie")
        .split(';')
        .next()
        .expect("c")
        .to_string();
    let html = page.into_string().expect("html");
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("csrf") + marker.len();
    let csrf = html[start..].split('"').next().expect("csrf");
    let login = agent
        .post(&format!("http://{addr}/login"))
        .set("Cookie", &cookie)
        .send_form(&[
            ("csrf_token", csrf),
            ("username", "bench"),
            ("password", "bench-password"),
        ]);
    let response = match login {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("sign-in: {e}"),
    };
    let session = response
        .header("set-cookie")
        .expect("session")
        .split(';')
        .next()
        .expect("c")
        .to_string();
    let page = agent
        .get(&format!("http://{addr}/oauth/device"))
        .set("Cookie", &session)
        .call()
        .expect("signed-in page")
        .into_string()
        .expect("html");
    let start = page.find(marker).expect("session csrf") + marker.len();
    let csrf = page[start..].split('"').next().expect("csrf").to_string();
    (session, csrf)
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").expect("write");
}

fn lua_poll(dir: &Path, seeded: &Seeded) -> PathBuf {
    lua_poll_codes(dir, "poll", &seeded.device_codes)
}

/// Polls of codes shaped like the live ones but unknown to the server (the last character
/// changed): no memory answers them, so each one reads the database, the lookup an on-time
/// poll makes, and gets `invalid_grant`.
fn lua_poll_unknown(dir: &Path, seeded: &Seeded) -> PathBuf {
    let unknown: Vec<String> = seeded
        .device_codes
        .iter()
        .map(|code| {
            let mut other = code.clone();
            let last = other.pop();
            other.push(if last == Some('A') { 'B' } else { 'A' });
            other
        })
        .collect();
    lua_poll_codes(dir, "poll-unknown", &unknown)
}

fn lua_poll_codes(dir: &Path, name: &str, device_codes: &[String]) -> PathBuf {
    let codes = dir.join(format!("{name}-codes-{}.txt", device_codes.len()));
    write_lines(&codes, device_codes);
    let script = dir.join(format!("{name}-{}.lua", device_codes.len()));
    std::fs::write(
        &script,
        format!(
            r#"local codes = {{}}
for line in io.lines("{}") do codes[#codes + 1] = line end
local headers = {{ ["Content-Type"] = "application/x-www-form-urlencoded" }}
local prefix = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&client_id=guest&device_code="
request = function()
  return wrk.format("POST", "/oauth/token", headers, prefix .. codes[math.random(#codes)])
end
"#,
            codes.display()
        ),
    )
    .expect("lua");
    script
}

fn lua_authorize(dir: &Path) -> PathBuf {
    let script = dir.join("authorize.lua");
    std::fs::write(
        &script,
        r#"wrk.method = "POST"
wrk.path = "/oauth/device_authorize"
wrk.body = "client_id=guest"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
"#,
    )
    .expect("lua");
    script
}

/// The consent page: a signed-in person submits a pending code (`POST /oauth/device`), as
/// the code form does; a right code counts against no limit.
fn lua_page(dir: &Path, seeded: &Seeded, cookie: &str, csrf: &str) -> PathBuf {
    let codes = dir.join("user-codes.txt");
    let sample: Vec<String> = seeded.user_codes.iter().take(1000).cloned().collect();
    write_lines(&codes, &sample);
    let script = dir.join("page.lua");
    std::fs::write(
        &script,
        format!(
            r#"local codes = {{}}
for line in io.lines("{}") do codes[#codes + 1] = line end
local headers = {{ ["Cookie"] = "{cookie}", ["Content-Type"] = "application/x-www-form-urlencoded" }}
request = function()
  return wrk.format("POST", "/oauth/device", headers, "csrf_token={csrf}&user_code=" .. codes[math.random(#codes)])
end
"#,
            codes.display()
        ),
    )
    .expect("lua");
    script
}

fn server_errors(addr: &str) -> u64 {
    let Ok(response) = ureq::get(&format!("http://{addr}/metrics"))
        .set("Authorization", &format!("Bearer {METRICS_TOKEN}"))
        .call()
    else {
        return 0;
    };
    response
        .into_string()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("devicegate_http_requests_total") && l.contains("status=\"5"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn wrk(opt: &Options, addr: &str, script: Option<&Path>, child: &Child) -> Run {
    wrk_all(opt, &[(addr, child)], script, None)
}

/// `wrk` against every target at once, the threads and connections split evenly between
/// them (one target: 2 threads, `opt.connections` connections). Rates, errors and the
/// servers' CPU are summed; latencies, peak RSS and threads are the worst target's. With
/// `db` (the cluster and the bench database's name), PostgreSQL's CPU time too.
fn wrk_all(
    opt: &Options,
    targets: &[(&str, &Child)],
    script: Option<&Path>,
    db: Option<(&pg::Cluster, &str)>,
) -> Run {
    let n = targets.len().max(1) as u64;
    let errors_before: u64 = targets.iter().map(|(addr, _)| server_errors(addr)).sum();
    let commands: Vec<Command> = targets
        .iter()
        .map(|(addr, _)| {
            let mut cmd = Command::new("wrk");
            cmd.args([
                "--latency",
                "-t",
                &(2 / n).max(1).to_string(),
                "-c",
                &(opt.connections / n).max(1).to_string(),
                "-d",
                &format!("{}s", opt.seconds),
                "--timeout",
                "5s",
            ]);
            if let Some(script) = script {
                cmd.arg("-s").arg(script);
            }
            cmd.arg(format!("http://{addr}/"))
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            cmd
        })
        .collect();
    let servers_cpu = || -> f64 { targets.iter().map(|(_, c)| cpu_seconds(c.id())).sum() };
    // The servers' thread counts, sampled while wrk runs.
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut cpu = 0.0;
    let mut db_cpu = None;
    let (outputs, peak_threads) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for (_, child) in targets {
                    peak = peak.max(proc_status(child.id(), "Threads:"));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        let perfs: Vec<Child> = targets
            .iter()
            .filter_map(|(_, child)| perf_record(child.id(), opt.seconds))
            .collect();
        let db_pids = db.map(|(cluster, name)| cluster.pids(name));
        let db_before = db_pids.as_ref().map(|pids| pids_cpu(pids));
        let cpu_before = servers_cpu();
        let running: Vec<Child> = commands
            .into_iter()
            .map(|mut cmd| cmd.spawn().expect("wrk"))
            .collect();
        let outputs: Vec<String> = running
            .into_iter()
            .map(|child| {
                let out = child.wait_with_output().expect("wrk");
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
            .collect();
        cpu = servers_cpu() - cpu_before;
        if let (Some(pids), Some(Some(before))) = (&db_pids, db_before) {
            db_cpu = pids_cpu(pids).map(|after| after - before);
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        for mut perf in perfs {
            let _ = perf.wait();
        }
        (outputs, sampler.join().unwrap_or(0))
    });
    let mut run = Run {
        server_errors: targets
            .iter()
            .map(|(addr, _)| server_errors(addr))
            .sum::<u64>()
            .saturating_sub(errors_before),
        peak_rss_kb: targets
            .iter()
            .map(|(_, child)| proc_status(child.id(), "VmHWM:"))
            .max()
            .unwrap_or(0),
        peak_threads,
        ..Run::default()
    };
    let mut answered = 0.0;
    for (text, (addr, _)) in outputs.iter().zip(targets) {
        if targets.len() > 1 {
            // Each instance's share, to see that the load really was split.
            let pick = |label: &str| {
                text.lines()
                    .find_map(|l| l.trim().strip_prefix(label))
                    .map_or("?", str::trim)
                    .to_string()
            };
            println!(
                "  wrk {addr}: {} requests/s, p50 {}, p99 {}",
                pick("Requests/sec:"),
                pick("50%"),
                pick("99%")
            );
        }
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["Requests/sec:", n] => run.rps += n.parse().unwrap_or(0.0),
                [n, "requests", "in", ..] => answered += n.parse().unwrap_or(0.0),
                ["50%", t] => run.p50_ms = run.p50_ms.max(millis(t)),
                ["99%", t] => run.p99_ms = run.p99_ms.max(millis(t)),
                ["Socket", "errors:", rest @ ..] => {
                    println!("  wrk: {}", line.trim());
                    run.socket_errors += rest
                        .iter()
                        .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                        .sum::<u64>()
                }
                _ => {}
            }
        }
    }
    if answered > 0.0 {
        run.cpu_us_per_request = cpu * 1e6 / answered;
        run.db_cpu_us_per_request = db_cpu.map(|s| s * 1e6 / answered);
    }
    run
}

/// CPU seconds used so far by these processes together; `None` when none of them is on
/// this machine (a PostgreSQL elsewhere).
fn pids_cpu(pids: &[u32]) -> Option<f64> {
    let here: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|pid| Path::new(&format!("/proc/{pid}/stat")).exists())
        .collect();
    (!here.is_empty()).then(|| here.iter().map(|&pid| cpu_seconds(pid)).sum())
}

fn print_row(name: &str, run: &Run, ratio: f64) {
    println!(
        "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} | {} | {:.1} MB | {} | {:.1} µs | {:.0}% |",
        run.rps,
        run.p50_ms,
        run.p99_ms,
        run.socket_errors,
        run.server_errors,
        run.peak_rss_kb as f64 / 1024.0,
        run.peak_threads,
        run.cpu_us_per_request,
        ratio * 100.0
    );
}

/// With `BENCH_PERF=<dir>`, each load is also profiled: `perf record` on the server
/// process, one `<dir>/<n>.data` per wrk run, in the order the scenarios run.
fn perf_record(pid: u32, seconds: u64) -> Option<Child> {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::var_os("BENCH_PERF")?;
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Command::new("perf")
        .args(["record", "-F", "999", "-g", "-p", &pid.to_string(), "-o"])
        .arg(Path::new(&dir).join(format!("{n}.data")))
        .args(["--", "sleep", &seconds.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

fn millis(t: &str) -> f64 {
    let (number, unit) = t.split_at(t.find(|c: char| c.is_alphabetic()).unwrap_or(t.len()));
    let n: f64 = number.parse().unwrap_or(0.0);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => n,
    }
}

/// A number from /proc/<pid>/status: `VmHWM:` (peak RSS, kB) or `Threads:`.
fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds the process has used so far (`/proc/<pid>/stat`, in ticks of
/// 1/100 s, the kernel's USER_HZ on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn median_run(runs: &[Run]) -> Run {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    sorted.get(sorted.len() / 2).cloned().unwrap_or_default()
}

/// PostgreSQL for the scale-out rows: a server named by `--postgres` on which the bench
/// creates a fresh database per run (and drops it after).
#[cfg(feature = "postgres")]
mod pg {
    use std::cell::{Cell, RefCell};

    pub struct Cluster {
        /// The URL as given, its database only used to connect.
        url: String,
        admin: RefCell<postgres::Client>,
        /// The server runs on this machine (its processes' CPU can be read).
        local: bool,
        made: Cell<usize>,
    }

    /// A database of its own for one run, dropped (with any connection left) on drop.
    pub struct FreshDb<'a> {
        cluster: &'a Cluster,
        pub name: String,
        /// The URL devicegate gets: `--postgres`'s with this database.
        pub url: String,
    }

    impl Cluster {
        /// Connects to `url`, or says why the PostgreSQL rows are skipped.
        pub fn connect(url: Option<&str>) -> Result<Cluster, String> {
            let url = url.ok_or(
                "no PostgreSQL given (--postgres postgres://user@host:port/db or \
                 DEVICEGATE_BENCH_POSTGRES)",
            )?;
            let mut config: postgres::Config = url
                .parse()
                .map_err(|e| format!("--postgres is not a PostgreSQL URL: {e}"))?;
            if config.get_password().is_none() {
                if let Ok(password) = std::env::var("PGPASSWORD") {
                    config.password(password);
                }
            }
            let local = config.get_hosts().iter().all(|host| match host {
                postgres::config::Host::Tcp(name) => {
                    matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1")
                }
                #[cfg(unix)]
                postgres::config::Host::Unix(_) => true,
            });
            let admin = config
                .connect(postgres::NoTls)
                .map_err(|e| format!("cannot connect to --postgres: {e}"))?;
            Ok(Cluster {
                url: url.to_string(),
                admin: RefCell::new(admin),
                local,
                made: Cell::new(0),
            })
        }

        /// The server's version and the settings that decide what a commit costs.
        pub fn settings(&self) -> String {
            let mut admin = self.admin.borrow_mut();
            let mut show = |name: &str| -> String {
                admin
                    .query_one(&format!("SHOW {name}"), &[])
                    .and_then(|row| row.try_get::<_, String>(0))
                    .unwrap_or_else(|e| format!("? ({e})"))
            };
            format!(
                "{} (fsync {}, synchronous_commit {}, full_page_writes {}, wal_sync_method {}, \
                 shared_buffers {}, max_connections {})",
                show("server_version"),
                show("fsync"),
                show("synchronous_commit"),
                show("full_page_writes"),
                show("wal_sync_method"),
                show("shared_buffers"),
                show("max_connections"),
            )
        }

        pub fn fresh(&self) -> Result<FreshDb<'_>, String> {
            let n = self.made.get();
            self.made.set(n + 1);
            let name = format!("devicegate_bench_{}_{n}", std::process::id());
            self.admin
                .borrow_mut()
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
            Ok(FreshDb {
                cluster: self,
                url: with_dbname(&self.url, &name),
                name,
            })
        }

        /// `ALTER DATABASE name SET setting = value`, for the connections made after it.
        pub fn set(&self, name: &str, setting: &str, value: &str) -> Result<(), String> {
            let sql = format!("ALTER DATABASE {name} SET {setting} = {value}");
            self.admin
                .borrow_mut()
                .batch_execute(&sql)
                .map_err(|e| format!("{sql}: {e}"))
        }

        /// The server processes serving database `name`, and its background processes (WAL
        /// writer, checkpointer, …); none when the server is on another machine.
        pub fn pids(&self, name: &str) -> Vec<u32> {
            if !self.local {
                return vec![];
            }
            self.admin
                .borrow_mut()
                .query(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1 OR datname IS NULL",
                    &[&name],
                )
                .map(|rows| {
                    rows.iter()
                        .filter_map(|r| r.try_get::<_, i32>(0).ok())
                        .filter_map(|pid| u32::try_from(pid).ok())
                        .collect()
                })
                .unwrap_or_default()
        }
    }

    impl Drop for FreshDb<'_> {
        fn drop(&mut self) {
            let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            if let Err(e) = self.cluster.admin.borrow_mut().batch_execute(&drop) {
                eprintln!("{drop}: {e}");
            }
        }
    }

    /// `url` with its database (the path) replaced by `name`, query parameters kept.
    fn with_dbname(url: &str, name: &str) -> String {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (url, None),
        };
        let authority_start = base.find("://").map_or(0, |i| i + 3);
        let path_start = base[authority_start..]
            .find('/')
            .map_or(base.len(), |i| authority_start + i);
        let mut out = format!("{}/{name}", &base[..path_start]);
        if let Some(query) = query {
            out.push('?');
            out.push_str(query);
        }
        out
    }
}

/// Built without the `postgres` feature: the PostgreSQL rows are skipped, saying why.
#[cfg(not(feature = "postgres"))]
mod pg {
    pub enum Cluster {}

    pub struct FreshDb {
        pub name: String,
        pub url: String,
    }

    impl Cluster {
        pub fn connect(_url: Option<&str>) -> Result<Cluster, String> {
            Err(
                "built without the `postgres` feature (cargo run --profile profiling \
                 --features postgres --example bench -- --postgres URL)"
                    .into(),
            )
        }

        pub fn settings(&self) -> String {
            match *self {}
        }

        pub fn fresh(&self) -> Result<FreshDb, String> {
            match *self {}
        }

        pub fn pids(&self, _name: &str) -> Vec<u32> {
            match *self {}
        }

        pub fn set(&self, _name: &str, _setting: &str, _value: &str) -> Result<(), String> {
            match *self {}
        }
    }
}
