//! callvcr started in process through `Server`, as the CLI starts it: a recording against the
//! stand-in sandbox, then a replay of it, each bound to free ports and shut down in order.

mod support;

use callvcr::config::Config;
use callvcr::server::Server;
use support::*;
use tokio::net::TcpStream;

fn on_free_ports() -> Config {
    let mut cfg = Config::default();
    cfg.listen.tls = "127.0.0.1:0".into();
    cfg.listen.proxy = "127.0.0.1:0".into();
    cfg.listen.admin = "127.0.0.1:0".into();
    cfg
}

async fn users_me(tls: std::net::SocketAddr, certs: &std::path::Path) -> Resp {
    let tcp = TcpStream::connect(tls).await.unwrap();
    let cfg = client_config(&certs.join("ca.pem"), &[b"http/1.1"]);
    let tls = tls_over(tcp, "api.mypurecloud.com", cfg).await.unwrap();
    H1::over(tls).await.send("GET", "/api/v2/users/me", &[("host", "api.mypurecloud.com")], "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_records_and_replays_in_process() {
    let dir = tempdir("server");
    let (certs, cassettes) = (dir.join("certs"), dir.join("cassettes"));
    let si = start_stand_in(&dir).await;

    let mut cfg = on_free_ports();
    cfg.resolve.insert("*".into(), si.addr);
    cfg.upstream_extra_ca = Some(si.ca_path.clone());
    let running = Server::record(cfg, &certs, &cassettes, "inproc", callvcr::server::RecordInto::Fresh)
        .unwrap()
        .start()
        .await
        .unwrap();
    let r = users_me(running.addresses.tls, &certs).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Agent Smith"), "{}", r.text());
    let journal = running.proxy().journal();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!((journal[0].answered_by.as_str(), journal[0].status), ("upstream", 200));
    let stopped = running.shutdown().await.unwrap();
    assert_eq!(stopped.proxy.stats.recorded.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(stopped.name, "inproc");
    drop(stopped);

    let running = Server::replay(on_free_ports(), &certs, &cassettes, "inproc").unwrap().start().await.unwrap();
    let replayed = users_me(running.addresses.tls, &certs).await;
    assert_eq!((replayed.status, replayed.body.clone()), (200, r.body.clone()), "{}", replayed.text());
    // The admin API of this server answers on its own address.
    let admin = running.addresses.admin.to_string();
    let j = H1::over(TcpStream::connect(running.addresses.admin).await.unwrap())
        .await
        .send("GET", "/mock/admin/journal", &[("host", admin.as_str())], "")
        .await
        .json();
    assert_eq!(j[0]["answered_by"], "hit", "{j}");
    let stopped = running.shutdown().await.unwrap();
    assert_eq!(stopped.proxy.stats.hits.get(), 1);
    assert!(stopped.proxy.missed().is_empty(), "{:?}", stopped.proxy.missed());
    si.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_bind_says_which_listener() {
    let dir = tempdir("server-bind");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = on_free_ports();
    cfg.listen.admin = taken.local_addr().unwrap().to_string();
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/cassettes/demo.jsonl");
    let server = Server::replay(cfg, &dir.join("certs"), &dir.join("cassettes"), demo).unwrap();
    let err = server.start().await.err().expect("a taken port must fail the start");
    assert!(err.contains("admin API") && err.contains("--admin"), "{err}");
}

/// The proxy listener's own refusals (a CONNECT replay will not tunnel, a Host it cannot route)
/// are answered, journaled and coded like every other refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_refuses_through_the_journal() {
    let dir = tempdir("server-refuse");
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/cassettes/demo.jsonl");
    let running = Server::replay(on_free_ports(), &dir.join("certs"), &dir.join("cassettes"), demo)
        .unwrap()
        .start()
        .await
        .unwrap();
    let proxy = running.addresses.proxy;

    let mut h1 = H1::over(TcpStream::connect(proxy).await.unwrap()).await;
    let r = h1.send("CONNECT", "elsewhere.example:443", &[("host", "elsewhere.example:443")], "").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], "callvcr.host.not_configured", "{}", r.text());
    assert!(r.text().contains("does not tunnel to elsewhere.example:443"), "{}", r.text());

    let mut h1 = H1::over(TcpStream::connect(proxy).await.unwrap()).await;
    let r = h1.send("GET", "/api/v2/users/me", &[("host", "elsewhere.example")], "").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["code"], "callvcr.host.not_configured", "{}", r.text());

    let journal = running.proxy().journal();
    let seen: Vec<(&str, &str, u16, &str)> =
        journal.iter().map(|e| (e.method.as_str(), e.host.as_str(), e.status, e.answered_by.as_str())).collect();
    assert_eq!(
        seen,
        [("CONNECT", "elsewhere.example:443", 403, "callvcr"), ("GET", "elsewhere.example", 400, "callvcr")],
        "{journal:?}"
    );
    running.shutdown().await.unwrap();
}

/// A replay whose virtual clock starts years away still presents certificates valid today:
/// clients check them against their own time (rustls here, with the real clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_dated_on_real_time_not_the_virtual_clock() {
    let dir = tempdir("server-leaf-time");
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/cassettes/demo.jsonl");
    let mut cfg = on_free_ports();
    cfg.clock_frozen = true;
    cfg.clock_start_ms = Some(1_577_836_800_000); // 2020-01-01
    let certs = dir.join("certs");
    let running = Server::replay(cfg, &certs, &dir.join("cassettes"), demo).unwrap().start().await.unwrap();
    // The handshake passed (rustls checked the leaf against today); the answer is the platform's
    // to a request without a token, which the demo recording made with one.
    let r = users_me(running.addresses.tls, &certs).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["code"], "authentication.required", "{}", r.text());
    running.shutdown().await.unwrap();
}
