//! Load: 1,000 concurrent keep-alive TLS connections replaying for a bounded time, with zero errors
//! and callvcr's memory bounded (sampled half way and at the end). `LOAD_CONNS` and `LOAD_SECS`
//! change the shape (defaults 1000 and 3).

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

/// Resident memory of `pid` in KiB (Linux; 0 elsewhere).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_replay_with_zero_errors_and_bounded_memory() {
    let conns: usize = std::env::var("LOAD_CONNS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let secs: u64 = std::env::var("LOAD_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    // This process holds one descriptor per client connection too (and callvcr raises its own).
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let fit = (limit.saturating_sub(128) as usize).min(conns);
    if fit < conns {
        eprintln!("open-file hard limit {limit}: loading {fit} connections instead of {conns}");
    }
    let conns = fit;
    let dir = tempdir("load");
    write_cassette(
        &dir,
        "l.jsonl",
        &[("GET", "api.mypurecloud.com", "/api/v2/users/me", "", 200, r#"{"id":"u-1","name":"Agent Smith"}"#)],
    );
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "l.jsonl", "--no-overlay", "auth,rate-limit"]);
    // The default: a core left to the client (here, this test), at least one worker.
    let cores = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
    assert_eq!(cv.workers, cores.saturating_sub(1).max(1));
    let idle_rss = rss_kib(cv.pid());
    let cfg = client_config(&cv.ca_path(), &[b"http/1.1"]);

    // Open every connection first (handshakes 50 at a time), then load them all at once.
    let mut clients = Vec::with_capacity(conns);
    for batch in (0..conns).collect::<Vec<_>>().chunks(50) {
        let opened = futures_util::future::join_all(batch.iter().map(|_| {
            let cfg = cfg.clone();
            let addr = cv.tls;
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
                H1::over(tls_over(tcp, "api.mypurecloud.com", cfg).await.expect("handshake")).await
            }
        }))
        .await;
        clients.extend(opened);
    }
    let (ok, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let (ok, errors) = (ok.clone(), errors.clone());
            tokio::spawn(async move {
                while tokio::time::Instant::now() < deadline {
                    match c.try_send("GET", "/api/v2/users/me", &[("host", "api.mypurecloud.com")], "").await {
                        Ok(r) if r.status == 200 && r.body.len() > 10 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    // The load runs for a set time; memory is sampled half way through it. The pause is the
    // measuring point, not a wait for an event.
    tokio::time::sleep(Duration::from_secs(secs) / 2).await;
    let mid_rss = rss_kib(cv.pid());
    for t in tasks {
        t.await.unwrap();
    }
    let end_rss = rss_kib(cv.pid());
    let (ok, errors) = (ok.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    println!(
        "load: {conns} connections for {secs} s: {ok} answers, {errors} errors; callvcr RSS idle {} MiB, half way {} MiB, end {} MiB",
        idle_rss / 1024,
        mid_rss / 1024,
        end_rss / 1024
    );
    assert_eq!(errors, 0, "every request answered");
    assert!(ok >= conns as u64, "every connection was served at least once: {ok}");
    assert!(end_rss < 512 * 1024, "memory stays bounded: {end_rss} KiB");
    assert!(end_rss < mid_rss + mid_rss / 4, "no growth under steady load: {mid_rss} → {end_rss} KiB");
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "{log}");
}
