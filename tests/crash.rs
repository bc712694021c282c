//! Crash safety, as a loop: record with clients writing continuously, `kill -9` callvcr at a random
//! moment (seeded), reopen the sled store, and check that every exchange a client saw acknowledged
//! is there and the store opens. `CRASH_ITERATIONS` sets how many rounds (default 6 in the test
//! suite; `CRASH_ITERATIONS=200 cargo test --test crash -- --nocapture` for the report).

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_never_loses_an_acknowledged_exchange() {
    let rounds: usize = std::env::var("CRASH_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    let seed: u64 = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x00c0_ffee);
    let dir = tempdir("crash-loop");
    let si = start_stand_in(&dir).await;
    let mut rng = Rng(seed);
    let (mut total_acked, mut total_stored, mut kills_in_flight) = (0usize, 0usize, 0usize);
    for round in 0..rounds {
        let name = format!("crash-{round}");
        let args = record_args(&si, &name);
        let cv = Callvcr::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
        let acked: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
        let in_flight: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
        // Two clients write continuously, each on its own keep-alive connection.
        let mut clients = Vec::new();
        for c in 0..2u64 {
            let (acked, in_flight) = (acked.clone(), in_flight.clone());
            let (tls, ca) = (cv.tls, cv.ca_path());
            clients.push(tokio::spawn(async move {
                let tcp = tokio::net::TcpStream::connect(tls).await.unwrap();
                let cfg = client_config(&ca, &[b"http/1.1"]);
                let Ok(s) = tls_over(tcp, "api.mypurecloud.com", cfg).await else { return };
                let mut api = H1::over(s).await;
                for k in 0.. {
                    let n = c * 1_000_000 + k;
                    in_flight.lock().unwrap().insert(n);
                    let h = [("host", "api.mypurecloud.com"), ("content-type", "application/json")];
                    let Ok(r) = api.try_send("POST", "/api/v2/echo", &h, &format!(r#"{{"n":{n}}}"#)).await else {
                        return;
                    };
                    assert_eq!(r.status, 200, "{}", r.text());
                    in_flight.lock().unwrap().remove(&n);
                    acked.lock().unwrap().insert(n);
                }
            }));
        }
        // Kill at a random moment: 20 to 420 ms into the round. The random pause is the test (a
        // crash at an arbitrary point of continuous writing), not a wait for anything.
        tokio::time::sleep(Duration::from_millis(20 + rng.next() % 400)).await;
        let pending = in_flight.lock().unwrap().len();
        cv.kill9();
        for c in clients {
            let _ = c.await;
        }
        if pending > 0 {
            kills_in_flight += 1;
        }
        // Reopen: the store opens, and holds every acknowledged exchange.
        let path = dir.join("cassettes").join(&name);
        let store = callvcr::cassette::Store::open(&path, false)
            .unwrap_or_else(|e| panic!("round {round} (seed {seed}): the store does not open after kill -9: {e}"));
        let stored: BTreeSet<u64> = store
            .load_all()
            .unwrap_or_else(|e| panic!("round {round}: a stored exchange does not read back: {e}"))
            .iter()
            .filter_map(|e| serde_json::from_slice::<serde_json::Value>(&e.request.body.bytes).ok())
            .filter_map(|v| v["n"].as_u64())
            .collect();
        drop(store);
        let acked = acked.lock().unwrap().clone();
        let lost: Vec<&u64> = acked.difference(&stored).collect();
        assert!(lost.is_empty(), "round {round} (seed {seed}): acknowledged but lost: {lost:?}");
        total_acked += acked.len();
        total_stored += stored.len();
    }
    si.stop();
    println!(
        "crash loop: {rounds} rounds of kill -9 (seed {seed}), {kills_in_flight} with a request in flight; {total_acked} exchanges acknowledged, {total_stored} stored, 0 lost"
    );
    assert!(total_acked > 0, "the clients made progress");
}
