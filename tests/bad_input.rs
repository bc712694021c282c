//! Bad input gets a clear error and loses nothing: upstream failures by kind, hostile HTTP and TLS,
//! invalid configuration, missing, corrupt or newer cassettes, ports in use, the CA's constraints.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_say_which_and_store_nothing() {
    let dir = tempdir("upfail");
    let si = start_stand_in(&dir).await;
    let dns = nxdomain_server().await;
    let closed = closed_port();
    std::fs::write(
        dir.join("proxy.yaml"),
        format!(
            "upstream:\n  timeout_ms: 700\n  nameservers: [\"{dns}\"]\n  resolve:\n    api.mypurecloud.com: \"{}\"\n    api.usw2.pure.cloud: \"127.0.0.1:{closed}\"\n",
            si.addr
        ),
    )
    .unwrap();
    let ca = si.ca_path.display().to_string();
    let cv = Callvcr::start(&dir, &["record", "--cassette", "fail", "--upstream-ca", &ca]);

    let kind = |r: &Resp| r.json()["kind"].as_str().unwrap_or("").to_string();
    let mut c = h1_tls(&cv, "api.usw2.pure.cloud").await;
    let r = c.send("GET", "/api/v2/users/me", &[("host", "api.usw2.pure.cloud")], "").await;
    assert_eq!((r.status, kind(&r).as_str()), (502, "connect"), "{}", r.text());
    assert_eq!(r.headers["x-callvcr-error"], "upstream");

    let mut c = h1_tls(&cv, "login.mypurecloud.com").await;
    let r = c.send("POST", "/oauth/token", &[("host", "login.mypurecloud.com")], "").await;
    assert_eq!((r.status, kind(&r).as_str()), (502, "dns"), "{}", r.text());

    let mut c = h1_tls(&cv, "api.mypurecloud.com").await;
    let r = c.send("GET", "/slow", &[("host", "api.mypurecloud.com")], "").await;
    assert_eq!((r.status, kind(&r).as_str()), (504, "timeout"), "{}", r.text());
    assert_eq!(r.headers["x-callvcr-error"], "upstream");
    let journal = H1::over(TcpStream::connect(cv.admin).await.unwrap())
        .await
        .send("GET", "/mock/admin/journal", &[("host", cv.admin.to_string().as_str())], "")
        .await
        .json();
    let details: Vec<(&str, &str)> = journal
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["answered_by"].as_str().unwrap(), e["detail"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        details,
        vec![
            ("upstream", "upstream-error:connect"),
            ("upstream", "upstream-error:dns"),
            ("upstream", "upstream-error:timeout")
        ]
    );
    // A body that stalls after the head: bounded by the same timeout, reported as one.
    let r = c.send("GET", "/stall", &[("host", "api.mypurecloud.com")], "").await;
    assert_eq!((r.status, kind(&r).as_str()), (504, "timeout"), "{}", r.text());
    assert!(r.text().contains("response body did not finish"), "{}", r.text());
    // The same for a WebSocket upgrade the sandbox answers with an ordinary, stalling answer.
    let upgrade = [
        ("host", "api.mypurecloud.com"),
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let mut c = h1_tls(&cv, "api.mypurecloud.com").await;
    let r = tokio::time::timeout(Duration::from_secs(10), c.send("GET", "/stall", &upgrade, ""))
        .await
        .expect("an upgrade answered with a stalling body hung the client");
    assert_eq!((r.status, kind(&r).as_str()), (504, "timeout"), "{}", r.text());
    assert!(r.text().contains("response body did not finish"), "{}", r.text());
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("0 exchanges and 0 WebSocket frames stored") && log.contains("5 upstream failures"), "{log}");

    // Without the sandbox's CA, verification fails: 502 tls, never a silent downgrade.
    std::fs::remove_file(dir.join("proxy.yaml")).unwrap();
    let cv = Callvcr::start(&dir, &["record", "--cassette", "fail", "--resolve", &format!("*={}", si.addr)]);
    let mut c = h1_tls(&cv, "api.mypurecloud.com").await;
    let r = c.send("GET", "/api/v2/users/me", &[("host", "api.mypurecloud.com")], "").await;
    assert_eq!((r.status, kind(&r).as_str()), (502, "tls"), "{}", r.text());
    assert_eq!(cv.stop().0, 0);
    assert!(
        si.seen.lock().unwrap().iter().all(|x| x.path != "/api/v2/users/me"),
        "an unverified upstream got the request"
    );

    let (code, out, err) = run(&dir, &["cassette", "export", "fail"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("wrote 0 exchanges"), "failures are not stored: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http_and_tls_get_clear_answers_and_the_proxy_keeps_serving() {
    let dir = tempdir("hostile");
    std::fs::write(dir.join("proxy.yaml"), "limits:\n  max_body_bytes: 1024\n  max_header_bytes: 8192\n").unwrap();
    std::fs::write(dir.join("empty.jsonl"), "{\"format\":\"callvcr-cassette\",\"version\":1}\n").unwrap();
    let cv = Callvcr::start(&dir, &["replay", "--no-overlay", "auth", "--cassette", "empty.jsonl"]);
    let cfg = client_config(&cv.ca_path(), &[b"http/1.1"]);

    // Malformed HTTP inside TLS → 400 and close.
    let tcp = TcpStream::connect(cv.tls).await.unwrap();
    let mut tls = tls_over(tcp, "api.mypurecloud.com", cfg.clone()).await.unwrap();
    tls.write_all(b"THIS IS NOT HTTP\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ =
        tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await.expect("no answer to garbage");
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 400"), "{}", String::from_utf8_lossy(&out));

    // Oversized header → 431.
    let tcp = TcpStream::connect(cv.tls).await.unwrap();
    let mut tls = tls_over(tcp, "api.mypurecloud.com", cfg.clone()).await.unwrap();
    let big = "a".repeat(20_000);
    tls.write_all(format!("GET / HTTP/1.1\r\nHost: api.mypurecloud.com\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out))
        .await
        .expect("no answer to a huge header");
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431"), "{}", String::from_utf8_lossy(&out));

    // Oversized body → 413 with a message naming the limit.
    let mut c = h1_tls(&cv, "api.mypurecloud.com").await;
    let r = c.send("POST", "/api/v2/echo", &[("host", "api.mypurecloud.com")], &"x".repeat(5000)).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("max_body_bytes"), "{}", r.text());

    // Conflicting Content-Length / Transfer-Encoding is refused, not smuggled.
    let tcp = TcpStream::connect(cv.tls).await.unwrap();
    let mut tls = tls_over(tcp, "api.mypurecloud.com", cfg.clone()).await.unwrap();
    tls.write_all(
        b"POST /a HTTP/1.1\r\nHost: api.mypurecloud.com\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await.expect("hung");
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 400"), "{}", String::from_utf8_lossy(&out));

    // TLS garbage on the TLS listener: closed, logged.
    let mut raw = TcpStream::connect(cv.tls).await.unwrap();
    raw.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00]).await.unwrap();
    let mut out = Vec::new();
    let _ =
        tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut out)).await.expect("garbage handshake hung");

    // Unknown SNI: handshake refused.
    let tcp = TcpStream::connect(cv.tls).await.unwrap();
    let refused = tls_over(tcp, "example.com", cfg.clone()).await;
    assert!(refused.is_err(), "a handshake for a host outside the list must fail");

    // CONNECT to a host outside the list, in replay: 403 with a message.
    let err = connect_tunnel(cv.proxy, "example.com:443").await.unwrap_err();
    assert!(err.starts_with("HTTP/1.1 403"), "{err}");

    // Still serving.
    let mut c = h1_tls(&cv, "api.mypurecloud.com").await;
    let r = c.send("GET", "/api/v2/users/me", &[("host", "api.mypurecloud.com")], "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.headers["x-callvcr-miss"], "1");
    let (code, log) = cv.stop();
    assert_eq!(code, 0);
    assert!(log.contains("refused TLS handshake for example.com"), "{log}");
    assert!(log.contains("TLS handshake failed"), "{log}");
}

#[test]
fn bad_configuration_and_cassettes_exit_2_with_a_clear_message() {
    let dir = tempdir("badcfg");
    std::fs::write(dir.join("bad.yaml"), "hosts:\n  - api.mypurecloud.com\nupstream:\n  timeout_ms: soon\n").unwrap();
    let (code, _, err) = run(&dir, &["replay", "--cassette", "x", "--config", "bad.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.yaml:4:"), "file:line:col: {err}");
    assert!(err.contains("expected a whole number") && err.contains("`timeout_ms: soon`"), "{err}");

    std::fs::write(dir.join("typo.yaml"), "listen:\n  tsl: 127.0.0.1:1\n").unwrap();
    let (code, _, err) = run(&dir, &["replay", "--cassette", "x", "--config", "typo.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("typo.yaml:2:") && err.contains("tsl"), "{err}");

    let (code, _, err) = run(&dir, &["replay", "--cassette", "nothing-here"]);
    assert_eq!(code, 2);
    assert!(err.contains("cassette `") && err.contains("not found"), "{err}");

    std::fs::write(dir.join("newer.jsonl"), "{\"format\":\"callvcr-cassette\",\"version\":99}\n").unwrap();
    let (code, _, err) = run(&dir, &["replay", "--cassette", "newer.jsonl"]);
    assert_eq!(code, 2);
    assert!(err.contains("newer"), "{err}");

    std::fs::write(dir.join("broken.jsonl"), "{\"format\":\"callvcr-cassette\",\"version\":1}\n{not json\n").unwrap();
    let (code, _, err) = run(&dir, &["replay", "--cassette", "broken.jsonl"]);
    assert_eq!(code, 2);
    assert!(err.contains("corrupt") && err.contains("line 2"), "{err}");

    // A sled directory that is not a cassette.
    std::fs::create_dir_all(dir.join("cassettes/garbage")).unwrap();
    std::fs::write(dir.join("cassettes/garbage/db"), vec![0xAB; 4096]).unwrap();
    std::fs::write(dir.join("cassettes/garbage/conf"), b"not a sled config").unwrap();
    let (code, _, err) = run(&dir, &["replay", "--cassette", "garbage"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cassette `") && err.contains("garbage"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // Port in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    std::fs::write(dir.join("empty.jsonl"), "{\"format\":\"callvcr-cassette\",\"version\":1}\n").unwrap();
    let (code2, _, err2) = run(
        &dir,
        &[
            "replay",
            "--cassette",
            "empty.jsonl",
            "--listen",
            &addr,
            "--proxy-listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(code2, 2);
    assert!(err2.contains("in use") && err2.contains("--listen"), "{err2}");
    drop(busy);

    // Unknown flag: usage error.
    let (code, _, _) = run(&dir, &["replay", "--no-such-flag"]);
    assert_eq!(code, 2);

    // A worker count that is no count, by flag or by environment.
    let (code, _, err) = run(&dir, &["--workers", "0", "replay", "--cassette", "empty.jsonl"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--workers is 0; expected 1 to 256 threads"), "{err}");
    let (code, _, err) = run_with(&dir, &["replay", "--cassette", "empty.jsonl"], &[("CALLVCR_WORKERS", "many")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("CALLVCR_WORKERS is `many`; expected a whole number"), "{err}");
}

#[test]
fn ca_is_name_constrained_private_and_not_overwritten() {
    let dir = tempdir("ca");
    let (code, out, err) = run(&dir, &["ca", "init"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("mypurecloud.com"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("certs/ca-key.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let pem = std::fs::read(dir.join("certs/ca.pem")).unwrap();
    let der = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap()
    };
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let nc = cert.name_constraints().unwrap().expect("name constraints present");
    let permitted: Vec<String> = nc
        .value
        .permitted_subtrees
        .iter()
        .flatten()
        .filter_map(|s| match s.base {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect();
    for d in ["mypurecloud.com", "pure.cloud", "nice-incontact.com", "niceincontact.com", "mypurecloud.ie"] {
        assert!(permitted.iter().any(|p| p == d), "{d} missing from {permitted:?}");
    }
    assert!(!permitted.iter().any(|p| p.contains("example") || p.is_empty()));
    assert!(cert.is_ca());

    let (code, _, err) = run(&dir, &["ca", "init"]);
    assert_eq!(code, 2);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(dir.join("certs/ca.pem")).unwrap(), pem, "not overwritten");
    let (code, _, _) = run(&dir, &["ca", "init", "--force"]);
    assert_eq!(code, 0);
    assert_ne!(std::fs::read(dir.join("certs/ca.pem")).unwrap(), pem, "--force replaces it");

    let (code, out, _) = run(&dir, &["ca", "show"]);
    assert_eq!(code, 0);
    for needle in
        ["expires:", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "keytool", "--cacert", "ssl_ca_cert"]
    {
        assert!(out.contains(needle), "ca show lacks {needle}: {out}");
    }
    let (code, out, _) = run(&dir, &["hosts"]);
    assert_eq!(code, 0);
    assert!(out.contains("127.0.0.1 api.mypurecloud.com") && out.contains("127.0.0.1 login.mypurecloud.com"), "{out}");
    assert!(!out.contains('*'), "a hosts file takes no wildcards: {out}");
}

#[test]
fn the_shipped_proxy_yaml_is_valid_and_covers_both_platforms() {
    let cfg = callvcr::config::Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.yaml")))
        .unwrap_or_else(|e| panic!("{e}"));
    for h in [
        "api.mypurecloud.com",
        "login.usw2.pure.cloud",
        "api.mypurecloud.de",
        "api-c52.nice-incontact.com",
        "na1.niceincontact.com",
    ] {
        assert!(cfg.is_configured_host(h), "{h}");
    }
    assert!(!cfg.is_configured_host("example.com"));
    assert_eq!(cfg.listen.tls, "127.0.0.1:9443");
}

async fn read_all(io: &mut (impl tokio::io::AsyncRead + Unpin), limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    tokio::time::timeout(limit, io.read_to_end(&mut out)).await.ok()?.ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_without_starving_the_others() {
    let dir = tempdir("slowloris");
    std::fs::write(dir.join("proxy.yaml"), "limits:\n  read_timeout_ms: 800\n").unwrap();
    write_cassette(&dir, "s.jsonl", &[("GET", "api.mypurecloud.com", "/api/v2/users/me", "", 200, r#"{"id":"u-1"}"#)]);
    let cv = Callvcr::start(&dir, &["replay", "--no-overlay", "auth", "--cassette", "s.jsonl"]);
    let cfg = client_config(&cv.ca_path(), &[b"http/1.1"]);
    // 40 clients trickle a request head, one byte every 100 ms, forever.
    let mut slow = Vec::new();
    for _ in 0..40 {
        let tcp = TcpStream::connect(cv.tls).await.unwrap();
        let mut tls = tls_over(tcp, "api.mypurecloud.com", cfg.clone()).await.unwrap();
        slow.push(tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            for b in b"GET /api/v2/users/me HTTP/1.1\r\nHost: api.mypurecloud.com\r\nX-Slow: ".iter().cycle() {
                if tls.write_all(&[*b]).await.is_err() || started.elapsed() > Duration::from_secs(10) {
                    break;
                }
                // Trickling is the behaviour under test (a slow client), not a wait.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            started.elapsed()
        }));
    }
    // Meanwhile others are served at once.
    for _ in 0..20 {
        let mut c = h1_tls(&cv, "api.mypurecloud.com").await;
        let t = tokio::time::Instant::now();
        let r = c.send("GET", "/api/v2/users/me", &[("host", "api.mypurecloud.com")], "").await;
        assert_eq!(r.status, 200);
        assert!(t.elapsed() < Duration::from_secs(2), "a normal client waited {:?}", t.elapsed());
    }
    for s in slow {
        let held = s.await.unwrap();
        assert!(held < Duration::from_secs(5), "a slow client held its connection for {held:?}");
    }
    // A keep-alive connection left idle after its answer is closed once the read timeout passes.
    let tcp = TcpStream::connect(cv.tls).await.unwrap();
    let mut tls = tls_over(tcp, "api.mypurecloud.com", cfg.clone()).await.unwrap();
    tls.write_all(b"GET /api/v2/users/me HTTP/1.1\r\nHost: api.mypurecloud.com\r\n\r\n").await.unwrap();
    let t = tokio::time::Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the connection ends (cut without a TLS close_notify, as for a slow head).
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(n @ 1..) = tls.read(&mut buf).await {
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(ended.is_ok(), "an idle connection was still open after 5 s");
    let out = String::from_utf8_lossy(&got);
    assert!(out.starts_with("HTTP/1.1 200") && out.contains(r#"{"id":"u-1"}"#), "{out}");
    assert!(t.elapsed() >= Duration::from_millis(700), "closed after {:?}, before the read timeout", t.elapsed());
    // A body that stops arriving: 408 once the read timeout passes.
    let tcp = TcpStream::connect(cv.tls).await.unwrap();
    let mut tls = tls_over(tcp, "api.mypurecloud.com", cfg.clone()).await.unwrap();
    tls.write_all(b"POST /api/v2/echo HTTP/1.1\r\nHost: api.mypurecloud.com\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let out = read_all(&mut tls, Duration::from_secs(5)).await.expect("answered, then closed");
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(out.contains("limits.read_timeout_ms"), "{out}");
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_invalid_utf8_and_truncated_tls_are_refused_cleanly() {
    let dir = tempdir("smuggle");
    write_cassette(
        &dir,
        "s.jsonl",
        &[
            ("GET", "api.mypurecloud.com", "/api/v2/users/me", "", 200, r#"{"id":"u-1"}"#),
            ("POST", "api.mypurecloud.com", "/api/v2/echo", "abcde", 200, r#"{"ok":true}"#),
        ],
    );
    let cv = Callvcr::start(&dir, &["replay", "--no-overlay", "auth", "--cassette", "s.jsonl"]);
    let cfg = client_config(&cv.ca_path(), &[b"http/1.1"]);
    let raw = |bytes: &'static [u8]| {
        let (tls_addr, cfg) = (cv.tls, cfg.clone());
        async move {
            let tcp = TcpStream::connect(tls_addr).await.unwrap();
            let mut tls = tls_over(tcp, "api.mypurecloud.com", cfg).await.unwrap();
            tls.write_all(bytes).await.unwrap();
            read_all(&mut tls, Duration::from_secs(5)).await.unwrap_or_default()
        }
    };
    // Content-Length beside Transfer-Encoding: the body is read as chunked alone (RFC 9112 6.3), the
    // connection is closed after the answer, and the request hidden behind it is never answered.
    let out = raw(b"POST /api/v2/echo HTTP/1.1\r\nHost: api.mypurecloud.com\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/v2/users/me HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "one answer, nothing smuggled: {out}");
    assert!(out.contains("connection: close"), "{out}");
    assert!(!out.contains(r#"{"id":"u-1"}"#), "the smuggled GET was not served: {out}");
    // A chunked body with a bad chunk size.
    let out = raw(b"POST /api/v2/echo HTTP/1.1\r\nHost: api.mypurecloud.com\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabcde\r\n0\r\n\r\n").await;
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 400"), "{out}");
    // Invalid UTF-8 in a header value and a body: answered (a miss), nothing breaks.
    let out = raw(b"POST /api/v2/echo HTTP/1.1\r\nHost: api.mypurecloud.com\r\nX-Bytes: \xff\xfe\r\nContent-Type: application/json\r\nContent-Length: 4\r\nConnection: close\r\n\r\n{\xc3(}").await;
    assert!(out.starts_with("HTTP/1.1 404") && out.contains("x-callvcr-miss: 1"), "{out}");
    // ... and in the request target: 400.
    let out = raw(b"GET /api/v2/caf\xc3(\xff HTTP/1.1\r\nHost: api.mypurecloud.com\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    // A ClientHello cut off half way, then silence, then a close.
    for cut in [5usize, 40, 120] {
        let mut s = TcpStream::connect(cv.tls).await.unwrap();
        let hello = client_hello_bytes().await;
        s.write_all(&hello[..cut.min(hello.len() - 1)]).await.unwrap();
        drop(s);
    }
    // Still serving.
    let mut c = h1_tls(&cv, "api.mypurecloud.com").await;
    assert_eq!(c.send("GET", "/api/v2/users/me", &[("host", "api.mypurecloud.com")], "").await.status, 200);
    let (code, log) = cv.stop();
    assert_eq!(code, 0);
    assert!(log.contains("TLS handshake failed before ClientHello"), "{log}");
}

/// A real ClientHello, as rustls writes it for api.mypurecloud.com.
async fn client_hello_bytes() -> Vec<u8> {
    let (a, mut b) = tokio::io::duplex(1 << 16);
    // The trust store does not matter: only the first flight is read.
    let roots = rustls::RootCertStore::empty();
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let name = rustls::pki_types::ServerName::try_from("api.mypurecloud.com").unwrap();
    let h = tokio::spawn(async move { connector.connect(name, a).await });
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), b.read(&mut buf)).await.unwrap().unwrap();
    h.abort();
    buf.truncate(n);
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_for_a_name_outside_the_constraints_is_rejected_by_a_real_tls_client() {
    let dir = tempdir("constraints");
    assert_eq!(run(&dir, &["ca", "init"]).0, 0);
    let ca_pem = std::fs::read_to_string(dir.join("certs/ca.pem")).unwrap();
    let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("certs/ca-key.pem")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, key).unwrap();
    // Someone with the CA key signs leaves itself; the CA's constraints still bind them.
    let handshake = |name: &'static str| {
        let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let leaf =
            rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
        let ca_der =
            <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::from_pem_slice(ca_pem.as_bytes())
                .unwrap();
        let chain = vec![leaf.der().clone(), ca_der];
        let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let client = client_config(&dir.join("certs/ca.pem"), &[]);
        async move {
            let (a, b) = tokio::io::duplex(1 << 16);
            let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
            tokio::spawn(async move {
                let _ = acceptor.accept(b).await;
            });
            tls_over(a, name, client).await.map(|_| ()).map_err(|e| e.to_string())
        }
    };
    assert_eq!(handshake("api.mypurecloud.com").await, Ok(()), "positive control: inside the constraints");
    let err = handshake("example.com").await.unwrap_err();
    assert!(err.to_lowercase().contains("name") && err.to_lowercase().contains("constrain"), "{err}");
    let err = handshake("login.mypurecloud.com.evil.example").await.unwrap_err();
    assert!(err.to_lowercase().contains("constrain"), "{err}");
}

#[test]
fn the_admin_api_refuses_a_caller_off_loopback() {
    // A caller off loopback needs another network: a private namespace joined by a veth pair,
    // made and removed here (root and iproute2 needed; CI has both).
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    let ip = std::process::Command::new("ip").arg("-V").output().is_ok();
    if !(root && ip) {
        assert!(std::env::var_os("CI").is_none(), "CI must be able to make a network namespace (root, iproute2)");
        eprintln!("skipped: needs root and iproute2 for a network namespace");
        return;
    }
    let tag = format!("cv{}", std::process::id() % 100_000);
    let (ns, a, b) = (format!("{tag}ns"), format!("{tag}a"), format!("{tag}b"));
    let sh = |cmd: &str| {
        let ok = std::process::Command::new("sh").args(["-c", cmd]).status().is_ok_and(|s| s.success());
        assert!(ok, "`{cmd}` failed");
    };
    let octet = 1 + std::process::id() % 250;
    let (host_ip, ns_ip) = (format!("10.213.{octet}.1"), format!("10.213.{octet}.2"));
    sh(&format!("ip netns add {ns}"));
    let cleanup = format!("ip netns del {ns}; ip link del {a} 2>/dev/null; true");
    let guard = scopeguard(cleanup.clone());
    sh(&format!("ip link add {a} type veth peer name {b} && ip link set {b} netns {ns}"));
    sh(&format!("ip addr add {host_ip}/30 dev {a} && ip link set {a} up"));
    sh(&format!(
        "ip netns exec {ns} sh -c 'ip addr add {ns_ip}/30 dev {b} && ip link set {b} up && ip link set lo up'"
    ));

    let dir = tempdir("admin-remote");
    write_cassette(&dir, "e.jsonl", &[]);
    let fetch = |url: &str, netns: &str| {
        let code = format!(
            "import urllib.request,urllib.error\ntry:\n  r=urllib.request.urlopen('{url}',timeout=5); print(r.status, r.read().decode())\nexcept urllib.error.HTTPError as e:\n  print(e.code, e.read().decode())"
        );
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", netns, "python3", "-c", &code])
            .env("NO_PROXY", "*")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let admin_at = format!("{host_ip}:0");
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "e.jsonl", "--admin", &admin_at]);
    let url = format!("http://{}/mock/admin/health", cv.admin);
    // From the namespace the peer is 10.213.x.2: refused, saying how to allow it.
    let out = fetch(&url, &ns);
    assert!(out.starts_with("403"), "{out}");
    assert!(out.contains("loopback callers only") && out.contains("admin.allow_remote"), "{out}");
    // The inspector's page and its event stream likewise.
    for path in ["/ui", "/mock/admin/events"] {
        let out = fetch(&format!("http://{}{path}", cv.admin), &ns);
        assert!(out.starts_with("403") && out.contains("loopback callers only"), "{path}: {out}");
    }
    assert_eq!(cv.stop().0, 0);

    // With admin.allow_remote the same caller gets its answer.
    std::fs::write(
        dir.join("remote.yaml"),
        format!("admin:\n  allow_remote: true\n  allowed_hosts: [\"{host_ip}\"]\n"),
    )
    .unwrap();
    let cv =
        Callvcr::start(&dir, &["replay", "--cassette", "e.jsonl", "--admin", &admin_at, "--config", "remote.yaml"]);
    let out = fetch(&format!("http://{}/mock/admin/health", cv.admin), &ns);
    assert!(out.starts_with("200") && out.contains(r#""status":"ok""#), "{out}");
    assert_eq!(cv.stop().0, 0);
    drop(guard);
}

/// Runs `cmd` in `sh` when dropped (network namespace clean-up, even when an assertion fails).
fn scopeguard(cmd: String) -> impl Drop {
    struct G(String);
    impl Drop for G {
        fn drop(&mut self) {
            let _ = std::process::Command::new("sh").args(["-c", &self.0]).status();
        }
    }
    G(cmd)
}
