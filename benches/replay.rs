//! Replay throughput and latency against a bare hyper + rustls server returning the same bytes.
//!
//! Both servers run as separate processes on loopback: callvcr's release binary replaying a
//! one-exchange cassette with its default overlays (the auth overlay checks every request's bearer
//! token; only `rate-limit` is off, since it would rightly answer 429), and this bench re-executed as
//! the bare server (same certificate chain, same key type, same response bytes). Each scenario runs the bare server and callvcr back to back
//! in the same run and reports the ratio, since absolute numbers on a shared machine are noise.
//!
//! `cargo bench --bench replay` (env: `BENCH_SECS` per scenario, default 4, split over
//! `BENCH_ROUNDS` interleaved rounds, default 5; `BENCH_CONCS`, the
//! keep-alive connection counts, default 1,16,64; `BENCH_CONC`, clients for the new-connection
//! scenario, default 4; `BENCH_REC_CONC`, keep-alive connections for record mode, default 16;
//! `BENCH_REC_SHAPE`, the request shape recorded (a label as in `BENCH_SHAPES`, default GET);
//! `BENCH_ONLY=record`, the record part alone; `CALLVCR_BENCH_BIN` runs another callvcr binary instead of this build's; `CALLVCR_BENCH_BASE_BIN`
//! runs a second callvcr binary, e.g. an older commit's, beside it in the same interleaved rounds
//! and reports callvcr/base as well, the A/B that noise on a shared machine does not swamp).

use std::net::SocketAddr;
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "api.mypurecloud.com";
const PATH: &str = "/api/v2/users/me";

/// One request shape an SDK sends: method, path and JSON body (empty for GET).
struct Shape {
    label: String,
    method: &'static str,
    path: &'static str,
    body: Bytes,
}

/// A JSON request body of about `size` bytes, as SDKs send them: a query's filter clauses, or a
/// user update, padded with more of the same.
fn request_body(kind: &str, size: usize) -> String {
    let mut v = match kind {
        // No times in it: replay would move those onto the recording's clock (time shift).
        "query" => serde_json::json!({
            "order": "asc", "orderBy": "conversationStart", "paging": {"pageSize": 25, "pageNumber": 1},
            "segmentFilters": [],
        }),
        _ => serde_json::json!({"version": 7, "department": "Support", "title": "Agent", "addresses": []}),
    };
    let mut i = 0;
    while v.to_string().len() < size {
        match kind {
            "query" => v["segmentFilters"].as_array_mut().unwrap().push(serde_json::json!({
                "type": "or", "predicates": [{"dimension": "queueId", "value": format!("{i:08}-7c1e-4d2a-9b3f-0a1b2c3d4e5f")}]
            })),
            _ => v["addresses"].as_array_mut().unwrap().push(serde_json::json!({
                "mediaType": "PHONE", "type": "WORK", "address": format!("+1317555{i:04}")
            })),
        }
        i += 1;
    }
    v.to_string()
}

/// The shapes measured: GET, and POST and PATCH with JSON bodies of 0.2 KB and 8 KB
/// (`BENCH_SHAPES`, a comma-separated list of labels, picks some).
fn shapes() -> Vec<Shape> {
    const USER: &str = "/api/v2/users/0c2f6a1e-9b7d-4a53-8f0e-2d4c6b8a1e3f";
    const QUERY: &str = "/api/v2/analytics/conversations/details/query";
    let mut all = vec![Shape { label: "GET".into(), method: "GET", path: PATH, body: Bytes::new() }];
    for (kb, size) in [("0.2KB", 200), ("8KB", 8192)] {
        all.push(Shape {
            label: format!("POST {kb}"),
            method: "POST",
            path: QUERY,
            body: request_body("query", size).into(),
        });
        all.push(Shape {
            label: format!("PATCH {kb}"),
            method: "PATCH",
            path: USER,
            body: request_body("user", size).into(),
        });
    }
    match std::env::var("BENCH_SHAPES") {
        Ok(pick) => {
            let pick: Vec<&str> = pick.split(',').map(str::trim).collect();
            all.into_iter().filter(|s| pick.contains(&s.label.as_str())).collect()
        }
        Err(_) => all,
    }
}

fn body() -> String {
    let mut v = serde_json::json!({
        "id": "0c2f6a1e-9b7d-4a53-8f0e-2d4c6b8a1e3f",
        "name": "Agent Smith",
        "division": {"id": "d1", "name": "Home"},
        "state": "active",
        "username": "agent.smith@example.com",
        "version": 7,
    });
    v["padding"] = serde_json::Value::String("x".repeat(700));
    v.to_string()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--bare-server") {
        bare_server(Path::new(&args[2]));
        return;
    }
    // `cargo bench` passes --bench; under `cargo test` this runs as a short smoke test.
    let benching = args.iter().any(|a| a == "--bench");
    let secs: f64 =
        std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(if benching { 4.0 } else { 0.2 });
    let warm = Duration::from_secs_f64((secs / 8.0).min(0.5));
    let conc: usize = std::env::var("BENCH_CONC").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let dir = std::env::temp_dir().join(format!("callvcr-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // A cassette of one exchange per shape, each answered with exactly the bytes the bare server
    // returns; the POST and PATCH requests recorded with their JSON bodies, as an SDK sent them.
    let shapes: Vec<Arc<Shape>> = shapes().into_iter().map(Arc::new).collect();
    let mut cassette = String::from("{\"format\":\"callvcr-cassette\",\"version\":1}\n");
    for (i, sh) in shapes.iter().enumerate() {
        let (headers, req_body) = if sh.body.is_empty() {
            (serde_json::json!([]), serde_json::json!({}))
        } else {
            let json: serde_json::Value = serde_json::from_slice(&sh.body).unwrap();
            (serde_json::json!([["content-type", "application/json"]]), serde_json::json!({"json": json}))
        };
        let ex = serde_json::json!({
            "seq": i + 1, "recorded_at": "2026-01-01T00:00:00.000Z", "duration_ms": 1,
            "request": {"method": sh.method, "scheme": "https", "host": HOST, "path": sh.path, "headers": headers, "body": req_body},
            "response": {"status": 200, "headers": [["content-type", "application/json"]], "body": {"text": body()}}
        });
        cassette.push_str(&format!("{ex}\n"));
    }
    std::fs::write(dir.join("bench.jsonl"), cassette).unwrap();

    let bin = std::env::var("CALLVCR_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_callvcr").to_string());
    let (callvcr, callvcr_addr) = start_replay(&bin, &dir);
    // The A/B base, if asked for: its own directory holding the same cassette and CA, so both
    // serve the same chain to the same client configuration.
    let base = std::env::var("CALLVCR_BENCH_BASE_BIN").ok().map(|base_bin| {
        let base_dir = dir.join("base");
        std::fs::create_dir_all(base_dir.join("certs")).unwrap();
        std::fs::copy(dir.join("bench.jsonl"), base_dir.join("bench.jsonl")).unwrap();
        for f in std::fs::read_dir(dir.join("certs")).unwrap() {
            let f = f.unwrap().path();
            if f.is_file() {
                std::fs::copy(&f, base_dir.join("certs").join(f.file_name().unwrap())).unwrap();
            }
        }
        start_replay(&base_bin, &base_dir)
    });
    let (mut bare, bare_addr) = common::spawn_bare(&[dir.join("certs").to_str().unwrap()]);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let cfg = common::client_config(&dir.join("certs/ca.pem"));
    // Log in once through the auth overlay; every request then carries the token it issued.
    let bearer: Arc<str> = format!("Bearer {}", rt.block_on(login(callvcr_addr, cfg.clone()))).into();
    let base_bearer: Arc<str> = match &base {
        Some((_, addr)) => format!("Bearer {}", rt.block_on(login(*addr, cfg.clone()))).into(),
        None => "".into(),
    };
    // The bare server gets the same request bytes, bearer included (it reads no header).
    let none = bearer.clone();
    let sizes: Vec<String> = shapes.iter().map(|s| format!("{} ({} B)", s.label, s.body.len())).collect();
    println!("replay benchmark: {secs} s per scenario; shapes {}; answer {} bytes", sizes.join(", "), body().len());
    println!("{:<52} {:>10} {:>10} {:>10} {:>12}", "scenario", "req/s", "p50 µs", "p99 µs", "CPU µs/req");
    let mut ratios = Vec::new();
    // Interleaved rounds per scenario (BENCH_ROUNDS): more rounds, a steadier median on a shared machine.
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5).max(1);
    // Keep-alive at 1, 16 and 64 connections (BENCH_CONCS overrides), then a new TLS connection per
    // request at BENCH_CONC.
    let concs: Vec<usize> = std::env::var("BENCH_CONCS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| if benching { vec![1, 16, 64] } else { vec![conc] });
    let mut scenarios: Vec<(String, bool, usize, Arc<Shape>)> = Vec::new();
    for sh in &shapes {
        for c in &concs {
            scenarios.push((format!("{}, keep-alive, {c} conn", sh.label), false, *c, sh.clone()));
        }
        scenarios.push((format!("{}, new TLS conn per request, {conc} clients", sh.label), true, conc, sh.clone()));
    }
    // BENCH_ONLY=record skips the replay scenarios (the record part and the mint still run).
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "record") {
        scenarios.clear();
    }
    let mut ab = Vec::new();
    for (label, new_conn, conc, shape) in scenarios {
        let load =
            |addr, span, auth: &Arc<str>| load(addr, cfg.clone(), new_conn, conc, span, auth.clone(), shape.clone());
        rt.block_on(load(bare_addr, warm, &none));
        rt.block_on(load(callvcr_addr, warm, &bearer));
        if let Some((_, addr)) = &base {
            rt.block_on(load(*addr, warm, &base_bearer));
        }
        // Interleaved rounds (bare, callvcr, bare, callvcr, ...) so drift on a shared machine hits both;
        // the reported ratio is the median of the per-round ratios.
        let span = Duration::from_secs_f64(secs / rounds as f64);
        let mut per_round = Vec::new();
        let mut cpu = Vec::new();
        let mut per_round_ab = Vec::new();
        // Each server's own p99/p50 per round: in a closed loop p50 follows throughput (Little's
        // law: connections / rate), so the p99 ratio is the p50 ratio times the ratio of these.
        let mut spreads: Vec<(f64, f64)> = Vec::new();
        // One measured span against one server: the outcome and the server's CPU per request.
        let measure = |name: &str, pid: u32, addr: SocketAddr, auth: &Arc<str>, round: usize| {
            let t0 = cpu_us(pid);
            let o = rt.block_on(load(addr, span, auth));
            let cpu = (cpu_us(pid) - t0) as f64 / o.n.max(1) as f64;
            let row = format!("{name}, {label} #{}", round + 1);
            println!("{row:<52} {:>10.0} {:>10} {:>10} {cpu:>12.1}", o.rps, o.p50, o.p99);
            (o, cpu)
        };
        for round in 0..rounds {
            let (b, b_cpu) = measure("bare", bare.id(), bare_addr, &none, round);
            // With a base, the two callvcr runs swap places each round so neither always goes first.
            let base_first = round % 2 == 1;
            let run_base = |round| base.as_ref().map(|(p, addr)| measure("base", p.id(), *addr, &base_bearer, round));
            let early = if base_first { run_base(round) } else { None };
            let (c, c_cpu) = measure("callvcr", callvcr.id(), callvcr_addr, &bearer, round);
            let late = if base_first { None } else { run_base(round) };
            if let Some((a, a_cpu)) = early.or(late) {
                per_round_ab.push((c.rps / a.rps, c.p99 as f64 / a.p99.max(1) as f64, c_cpu / a_cpu.max(0.1)));
            }
            per_round.push((c.rps / b.rps, c.p50 as f64 / b.p50.max(1) as f64, c.p99 as f64 / b.p99.max(1) as f64));
            spreads.push((b.p99 as f64 / b.p50.max(1) as f64, c.p99 as f64 / c.p50.max(1) as f64));
            cpu.push((b_cpu, c_cpu));
        }
        cpu.sort_by(|a, b| (a.1 / a.0).total_cmp(&(b.1 / b.0)));
        let (b_cpu, c_cpu) = cpu[cpu.len() / 2];
        let median = |v: &[(f64, f64, f64)], f: fn(&(f64, f64, f64)) -> f64| middle(v.iter().map(f));
        if !per_round_ab.is_empty() {
            let m = |f| median(&per_round_ab, f);
            ab.push((label.clone(), m(|r| r.0), m(|r| r.1), m(|r| r.2)));
        }
        let m = |f| median(&per_round, f);
        let tails = (middle(spreads.iter().map(|s| s.0)), middle(spreads.iter().map(|s| s.1)));
        ratios.push((label.clone(), m(|r| r.0), m(|r| r.1), m(|r| r.2), b_cpu, c_cpu, tails));
    }
    // Record mode: every exchange is written to sled and flushed to disk before the client gets
    // its response. Same client load, through callvcr to the bare server, against the bare server
    // direct; and, as the ceiling a recorder cannot pass, the same binary forwarding the same
    // requests without storing them (`record.ignore` matching every path).
    std::fs::write(dir.join("forward-only.yaml"), "record:\n  ignore:\n    - path: \"^/\"\n").unwrap();
    let start_recorder = |ready: &str, extra: &[&str]| {
        let child = Command::new(env!("CARGO_BIN_EXE_callvcr"))
            .args(["record", "--listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(["--ready-file", ready, "--upstream-ca", "certs/ca.pem"])
            .args(extra)
            .arg("--resolve")
            .arg(format!("*={bare_addr}"))
            // The cassette writer says at exit how many writes its flushes covered.
            .env("CALLVCR_LOG", "warn,callvcr::cassette::commit=debug")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let addr = tls_addr_when_ready(&dir.join(ready));
        (child, addr)
    };
    let (mut recorder, rec_addr) = start_recorder("ready-rec.json", &["--cassette", "benchrec"]);
    let (mut forwarder, fwd_addr) =
        start_recorder("ready-fwd.json", &["--cassette", "benchfwd", "--config", "forward-only.yaml"]);
    let get = Arc::new(Shape { label: "GET".into(), method: "GET", path: PATH, body: Bytes::new() });
    // Keep-alive connections for record mode (BENCH_REC_CONC, default 16): concurrent exchanges
    // share a flush (group commit).
    let rec_conc: usize = std::env::var("BENCH_REC_CONC").ok().and_then(|s| s.parse().ok()).unwrap_or(16);
    let rec_shape: Arc<Shape> = match std::env::var("BENCH_REC_SHAPE") {
        Ok(l) => shapes.iter().find(|s| s.label == l).cloned().unwrap_or_else(|| get.clone()),
        Err(_) => get.clone(),
    };
    for addr in [rec_addr, fwd_addr] {
        rt.block_on(load(addr, cfg.clone(), false, rec_conc, warm, bearer.clone(), rec_shape.clone()));
    }
    let span = Duration::from_secs_f64(secs / rounds as f64);
    let mut rec_rounds = Vec::new();
    let mut rec_last = None;
    for round in 0..rounds {
        let run = |name: &str, pid: u32, addr: SocketAddr| {
            let t0 = cpu_us(pid);
            let o = rt.block_on(load(addr, cfg.clone(), false, rec_conc, span, bearer.clone(), rec_shape.clone()));
            let cpu = (cpu_us(pid) - t0) as f64 / o.n.max(1) as f64;
            let row = format!("{name}, {} {rec_conc} conn #{}", rec_shape.label, round + 1);
            println!("{row:<52} {:>10.0} {:>10} {:>10} {cpu:>12.1}", o.rps, o.p50, o.p99);
            (o, cpu)
        };
        let (d, _) = run("direct (record baseline)", bare.id(), bare_addr);
        let (r, r_cpu) = run("callvcr record", recorder.id(), rec_addr);
        let (f, f_cpu) = run("callvcr forward only", forwarder.id(), fwd_addr);
        rec_rounds.push((r.rps / d.rps, f.rps / d.rps, r.rps / f.rps, r_cpu, f_cpu));
        rec_last = Some((d, r));
    }
    let (b, r) = rec_last.expect("at least one round");
    let rec_median = |f: fn(&(f64, f64, f64, f64, f64)) -> f64| middle(rec_rounds.iter().map(f));
    let _ = Command::new("kill").arg("-INT").arg(recorder.id().to_string()).status();
    let _ = recorder.wait();
    let _ = Command::new("kill").arg("-INT").arg(forwarder.id().to_string()).status();
    let _ = forwarder.wait();

    // Cold leaf mint for a new SNI: in-process (the mint itself), and end to end (a TLS handshake
    // with callvcr for a name it has not seen, against one it has).
    let mints = if benching { 300 } else { 20 };
    let (mint_p50, mint_p99) = mint_times(&dir.join("certs"), mints);
    let (cold, warm_hs) = rt.block_on(handshakes(callvcr_addr, cfg.clone(), mints));
    println!("{:<34} {:>10} {:>10} {:>10}", format!("leaf mint, in process (n={mints})"), "", mint_p50, mint_p99);
    println!("{:<34} {:>10} {:>10} {:>10}", "TLS handshake, new SNI (cold mint)", "", cold.0, cold.1);
    println!("{:<34} {:>10} {:>10} {:>10}", "TLS handshake, known SNI (cached)", "", warm_hs.0, warm_hs.1);

    println!();
    println!(
        "record mode (forward + store + flush shared by concurrent exchanges), {} at {rec_conc} conn, medians of {rounds} rounds: record/direct {:.2}x, forward-only/direct {:.2}x, record/forward-only {:.2}x; recorder CPU per exchange {:.1} µs, forwarder {:.1} µs; last round p50 {} µs direct, {} µs recorded",
        rec_shape.label,
        rec_median(|x| x.0),
        rec_median(|x| x.1),
        rec_median(|x| x.2),
        rec_median(|x| x.3),
        rec_median(|x| x.4),
        b.p50,
        r.p50
    );
    println!(
        "cold leaf mint: p50 {:.2} ms, p99 {:.2} ms in process; a handshake for a new name costs p50 {:.2} ms more than for a known one",
        mint_p50 as f64 / 1000.0,
        mint_p99 as f64 / 1000.0,
        (cold.0 as f64 - warm_hs.0 as f64) / 1000.0
    );
    for (label, r, p50, p99, b_cpu, c_cpu, (b_tail, c_tail)) in &ratios {
        println!("median ratio callvcr/bare over {rounds} rounds, {label}: throughput {r:.2}x, p50 latency {p50:.2}x, p99 latency {p99:.2}x; server CPU per request {c_cpu:.1} µs vs {b_cpu:.1} µs bare; p99/p50 {c_tail:.2} vs {b_tail:.2} bare");
    }
    for (label, r, p99, cpu) in &ab {
        println!("median ratio callvcr/base over {rounds} rounds, {label}: throughput {r:.2}x, p99 latency {p99:.2}x, server CPU per request {cpu:.2}x");
    }
    for (mut p, _) in base.into_iter().chain([(callvcr, callvcr_addr)]) {
        let _ = Command::new("kill").arg("-INT").arg(p.id().to_string()).status();
        let _ = p.wait();
    }
    let _ = bare.kill();
    let _ = bare.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The median of per-round values (the upper middle one of an even count).
fn middle(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Starts `bin` replaying `dir`'s one-exchange cassette with the bench's overlays; returns the
/// child and its TLS listener address once it is ready.
fn start_replay(bin: &str, dir: &Path) -> (std::process::Child, SocketAddr) {
    let child = Command::new(bin)
        .args(["replay", "--cassette", "bench.jsonl", "--listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0"])
        .args(["--admin", "127.0.0.1:0", "--ready-file", "ready.json", "--no-overlay", "rate-limit"])
        .env("CALLVCR_LOG", "warn")
        .current_dir(dir)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    (child, tls_addr_when_ready(&dir.join("ready.json")))
}

/// Waits for callvcr's `--ready-file` and returns its TLS listener address.
fn tls_addr_when_ready(ready: &Path) -> SocketAddr {
    loop {
        if let Ok(t) = std::fs::read_to_string(ready) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                return v["tls"].as_str().unwrap().parse().unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Outcome {
    rps: f64,
    p50: u128,
    p99: u128,
    n: usize,
}

/// CPU time (user + system, all threads) `pid` has used, in µs (Linux; clock ticks of 10 ms).
fn cpu_us(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3 on: utime is 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * 10_000
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn open(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> Sender {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg).connect(ServerName::try_from(HOST).unwrap(), tcp).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// A client-credentials login against callvcr's auth overlay; returns the access token.
async fn login(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let login_host = "login.mypurecloud.com";
    let tls =
        tokio_rustls::TlsConnector::from(cfg).connect(ServerName::try_from(login_host).unwrap(), tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("/oauth/token")
        .header("host", login_host)
        .header("authorization", "Basic YmVuY2g6YmVuY2g=")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(b"grant_type=client_credentials")))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

/// One request of `shape` carrying `bearer` (the token the server under test issued; empty for the
/// bare server).
async fn one(sender: &mut Sender, bearer: &str, shape: &Shape) {
    sender.ready().await.unwrap();
    let mut req = hyper::Request::builder().method(shape.method).uri(shape.path).header("host", HOST);
    if !bearer.is_empty() {
        req = req.header("authorization", bearer);
    }
    if !shape.body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Full::new(shape.body.clone())).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "{} {}", shape.method, shape.path);
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(b.len() > 700);
}

#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
async fn load(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    new_conn: bool,
    conc: usize,
    span: Duration,
    bearer: Arc<str>,
    shape: Arc<Shape>,
) -> Outcome {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let cfg = cfg.clone();
        let bearer = bearer.clone();
        let shape = shape.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut sender = if new_conn { None } else { Some(open(addr, cfg.clone()).await) };
            while start.elapsed() < span {
                let t = Instant::now();
                match sender.as_mut() {
                    Some(s) => one(s, &bearer, &shape).await,
                    None => one(&mut open(addr, cfg.clone()).await, &bearer, &shape).await,
                }
                lat.push(t.elapsed().as_micros());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    // A scenario too short to finish one request (a smoke run on a loaded machine) has no latency.
    let pct = |p: f64| if all.is_empty() { 0 } else { all[((all.len() as f64 * p) as usize).min(all.len() - 1)] };
    Outcome { rps: all.len() as f64 / elapsed, p50: pct(0.50), p99: pct(0.99), n: all.len() }
}

/// p50 and p99 (µs) of minting `n` leaves for names never seen, with callvcr's own leaf cache.
#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
fn mint_times(certs: &Path, n: usize) -> (u128, u128) {
    let clock = Arc::new(callvcr::clock::Clock::system());
    let leaves = callvcr::tls::LeafCache::new(callvcr::tls::Ca::load(certs).unwrap(), clock).unwrap();
    let mut t: Vec<u128> = (0..n)
        .map(|i| {
            let start = Instant::now();
            leaves.server_config(&format!("mint-{i}.mypurecloud.com")).unwrap();
            start.elapsed().as_micros()
        })
        .collect();
    t.sort_unstable();
    (t[n / 2], t[(n * 99 / 100).min(n - 1)])
}

/// p50 and p99 (µs) of TLS handshakes with callvcr: for `n` names it has not seen, and `n` times
/// for one it has.
#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
async fn handshakes(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>, n: usize) -> ((u128, u128), (u128, u128)) {
    let one = |name: String| {
        let cfg = cfg.clone();
        async move {
            let start = Instant::now();
            let tcp = TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let sni = ServerName::try_from(name).unwrap();
            let _tls = tokio_rustls::TlsConnector::from(cfg).connect(sni, tcp).await.unwrap();
            start.elapsed().as_micros()
        }
    };
    let pcts = |mut v: Vec<u128>| {
        v.sort_unstable();
        (v[v.len() / 2], v[(v.len() * 99 / 100).min(v.len() - 1)])
    };
    one(HOST.to_string()).await;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    // Interleaved, so drift hits both.
    for i in 0..n {
        cold.push(one(format!("sni-{i}.mypurecloud.com")).await);
        warm.push(one(HOST.to_string()).await);
    }
    (pcts(cold), pcts(warm))
}

/// The baseline: hyper + rustls with the same certificate chain, returning the same bytes.
fn bare_server(certs: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let clock = Arc::new(callvcr::clock::Clock::system());
        let ca = callvcr::tls::Ca::load(certs).unwrap();
        let leaves = callvcr::tls::LeafCache::new(ca, clock).unwrap();
        let cfg = leaves.server_config(HOST).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        let body = Bytes::from(body());
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        // Read the request's body, as any server answering a POST does.
                        let _ = req.into_body().collect().await;
                        let mut r = hyper::Response::new(Full::new(body));
                        r.headers_mut().insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
}
