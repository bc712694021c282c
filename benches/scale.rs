//! Cassette scale: for cassettes of 1k, 100k and 1M exchanges, the time `cassette import` takes,
//! the first replay's start-up (it writes the cassette's replay file) and peak memory, then a
//! replay's start-up time (spawn to every listener bound), its resident memory, and the latency of
//! cassette hits spread over the whole cassette. The hit path should not grow with the
//! cassette; start-up and memory are reported against the targets (< 1 s, < 300 MB at 1M).
//!
//! `cargo bench --bench scale` (env: `SCALE_SIZES`, default 1000,100000,1000000; `SCALE_HITS`,
//! default 5000). Under `cargo test` it runs once, at 1000 exchanges, as a smoke test.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

const HOST: &str = "api.mypurecloud.com";

/// The id of exchange `i`: UUID-shaped, so paths look like the platform's.
fn id(i: usize) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", i as u32, i)
}

#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench");
    let sizes: Vec<usize> = std::env::var("SCALE_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| if benching { vec![1_000, 100_000, 1_000_000] } else { vec![1_000] });
    let hits: usize =
        std::env::var("SCALE_HITS").ok().and_then(|s| s.parse().ok()).unwrap_or(if benching { 5_000 } else { 300 });
    let dir = std::env::temp_dir().join(format!("callvcr-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let bin = std::env::var("CALLVCR_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_callvcr").to_string());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();

    println!("cassette scale: replay start-up, resident memory and hit latency ({hits} hits over the whole cassette)");
    println!(
        "{:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>8} {:>7} {:>7}",
        "exchanges",
        "jsonl MB",
        "import s",
        "first s",
        "first MB",
        "start-up s",
        "RSS MB",
        "peak MB",
        "p50 µs",
        "p99 µs"
    );
    for n in sizes {
        // A cassette of n distinct GETs, each a small user object.
        let file = dir.join(format!("scale-{n}.jsonl"));
        {
            use std::io::Write;
            let mut w = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
            writeln!(w, "{{\"format\":\"callvcr-cassette\",\"version\":1}}").unwrap();
            for i in 0..n {
                let id = id(i);
                let body = format!(
                    "{{\"id\":\"{id}\",\"name\":\"Agent {i}\",\"state\":\"active\",\"email\":\"agent{i}@example.com\",\"version\":{}}}",
                    i % 7
                );
                let ex = serde_json::json!({
                    "seq": i + 1, "recorded_at": "2026-01-05T09:00:00.000Z", "duration_ms": 1,
                    "request": {"method": "GET", "scheme": "https", "host": HOST, "path": format!("/api/v2/users/{id}"),
                                "headers": [["host", HOST], ["accept", "application/json"]], "body": {}},
                    "response": {"status": 200, "headers": [["content-type", "application/json"]], "body": {"text": body}},
                });
                writeln!(w, "{ex}").unwrap();
            }
        }
        let mb = std::fs::metadata(&file).unwrap().len() as f64 / 1e6;
        let name = format!("scale-{n}");
        let t = Instant::now();
        let out = Command::new(&bin)
            .args(["cassette", "import", file.to_str().unwrap(), "--name", &name])
            .current_dir(&dir)
            .env("CALLVCR_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let import_s = t.elapsed().as_secs_f64();

        // The first replay after a recording writes the replay file (import already did: removed
        // here to time that), every later one starts from it.
        let replay_file = dir.join("cassettes").join(&name).join("replay.bin");
        assert!(replay_file.exists(), "import writes the replay file");
        std::fs::remove_file(&replay_file).unwrap();
        let (mut child, _, first_s) = start(&bin, &dir, &name);
        let (_, first_peak) = memory(child.id());
        let _ = Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
        let _ = child.wait();
        assert!(replay_file.exists(), "the first replay writes the replay file");
        let (mut child, addr, startup_s) = start(&bin, &dir, &name);
        let cfg = common::client_config(&dir.join("certs/ca.pem"));
        let (p50, p99) = rt.block_on(hit_latency(addr, cfg, n, hits));
        let (rss, peak) = memory(child.id());
        println!(
            "{n:>10} {mb:>9.1} {import_s:>9.2} {first_s:>9.2} {:>9.1} {startup_s:>10.3} {:>8.1} {:>8.1} {p50:>7} {p99:>7}",
            first_peak as f64 / 1024.0,
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        );
        let _ = Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(dir.join("cassettes").join(&name));
        let _ = std::fs::remove_file(&file);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts a replay of cassette `name` and waits until every listener is bound: the process, the
/// TLS address and the seconds that took.
#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
fn start(bin: &str, dir: &std::path::Path, name: &str) -> (std::process::Child, std::net::SocketAddr, f64) {
    let ready = dir.join(format!("ready-{name}.json"));
    let _ = std::fs::remove_file(&ready);
    let t = Instant::now();
    let mut child = Command::new(bin)
        .args(["replay", "--cassette", name, "--listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0"])
        .args(["--admin", "127.0.0.1:0", "--ready-file", ready.to_str().unwrap(), "--no-overlay", "auth,rate-limit"])
        .env("CALLVCR_LOG", "warn")
        .current_dir(dir)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let addr = loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                break v["tls"].as_str().unwrap().parse::<std::net::SocketAddr>().unwrap();
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "callvcr exited before it was ready");
        std::thread::sleep(Duration::from_millis(5));
    };
    (child, addr, t.elapsed().as_secs_f64())
}

/// VmRSS and VmHWM of `pid`, in KiB (Linux).
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// p50 and p99 (µs) of `hits` GETs over one keep-alive connection, spread over all `n` recordings.
#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
async fn hit_latency(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    n: usize,
    hits: usize,
) -> (u128, u128) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg).connect(ServerName::try_from(HOST).unwrap(), tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut lat = Vec::with_capacity(hits);
    for k in 0..hits + 200 {
        // A fixed pseudo-random walk over the cassette (xorshift), the same every run.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % n as u64) as usize;
        let t = Instant::now();
        sender.ready().await.unwrap();
        let req = hyper::Request::get(format!("/api/v2/users/{}", id(i)))
            .header("host", HOST)
            .header("accept", "application/json")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(body.len() > 40);
        if k >= 200 {
            lat.push(t.elapsed().as_micros());
        }
    }
    lat.sort_unstable();
    (lat[lat.len() / 2], lat[(lat.len() * 99 / 100).min(lat.len() - 1)])
}
