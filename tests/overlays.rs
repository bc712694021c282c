//! Overlays I through the real binary: the auth overlay (Genesys and NICE), the rate-limit overlay,
//! the virtual clock and the admin API that drives them. Every request goes over real TLS to a
//! replaying callvcr; the cassettes are small hand-written JSON Lines files.

mod support;

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use support::*;

const START: &str = "2026-01-05T09:00:00Z";
/// 2026-01-05T09:00:00Z in seconds since the epoch.
const START_S: i64 = 1_767_603_600;
const ME: &str = r#"{"id":"u-1","name":"Agent Smith"}"#;
/// A 401 as the platform wrote it, recorded on another route: the overlay must answer with it.
const RECORDED_401: &str = r#"{"message":"Invalid login credentials.","code":"bad.credentials","status":401,"contextId":"recorded-context-7","details":[],"errors":[]}"#;

fn cassette(dir: &Path) {
    write_cassette(
        dir,
        "o.jsonl",
        &[
            ("GET", "api.mypurecloud.com", "/api/v2/users/me", "", 200, ME),
            ("GET", "api.mypurecloud.com", "/api/v2/routing/queues", "", 401, RECORDED_401),
            ("GET", "api-na1.niceincontact.com", "/incontactapi/services/v27.0/agents", "", 200, r#"{"agents":[]}"#),
            (
                "POST",
                "login.mypurecloud.com",
                "/oauth/token",
                "grant_type=client_credentials",
                200,
                r#"{"access_token":"[REDACTED]","token_type":"bearer","expires_in":86399}"#,
            ),
        ],
    );
}

fn start(dir: &Path, config: &str, extra: &[&str]) -> Callvcr {
    cassette(dir);
    std::fs::write(dir.join("proxy.yaml"), config).unwrap();
    let mut args =
        vec!["replay", "--cassette", "o.jsonl", "--config", "proxy.yaml", "--clock-frozen", "--clock-start", START];
    args.extend_from_slice(extra);
    Callvcr::start(dir, &args)
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

async fn genesys_login(cv: &Callvcr, auth: &str, body: &str) -> Resp {
    let mut c = h1_tls(cv, "login.mypurecloud.com").await;
    let mut h = vec![("host", "login.mypurecloud.com"), ("content-type", "application/x-www-form-urlencoded")];
    if !auth.is_empty() {
        h.push(("authorization", auth));
    }
    c.send("POST", "/oauth/token", &h, body).await
}

async fn get(cv: &Callvcr, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut c = h1_tls(cv, host).await;
    let mut h = vec![("host", host)];
    h.extend_from_slice(headers);
    c.send("GET", path, &h, "").await
}

async fn me(cv: &Callvcr, token: &str) -> Resp {
    let bearer = format!("Bearer {token}");
    get(cv, "api.mypurecloud.com", "/api/v2/users/me", &[("authorization", bearer.as_str())]).await
}

fn claims(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn advance(cv: &Callvcr, ms: i64) -> Value {
    let r = admin(cv, "POST", "/mock/admin/clock", &json!({"advance_ms": ms}).to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genesys_login_api_call_expiry_on_the_virtual_clock_and_relogin() {
    let dir = tempdir("ov-genesys");
    let cv = start(&dir, "", &[]);

    let r = genesys_login(&cv, &basic("my-client", "my-secret"), "grant_type=client_credentials").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["content-type"], "application/json");
    let t = r.json();
    assert_eq!(t["token_type"], "bearer");
    assert_eq!(t["expires_in"], 86_399, "as long as the recorded token lived (no ttl configured)");
    assert!(t.get("refresh_token").is_none(), "client credentials never get a refresh token: {t}");
    let token = t["access_token"].as_str().unwrap().to_string();
    let c = claims(&token);
    assert_eq!(c["iat"], START_S, "iat comes from the virtual clock");
    assert_eq!(c["exp"], START_S + 86_399);
    assert_eq!(c["sub"], "my-client");

    let ok = me(&cv, &token).await;
    assert_eq!((ok.status, ok.text()), (200, ME.to_string()));

    // Missing bearer: the platform's body.
    let r = get(&cv, "api.mypurecloud.com", "/api/v2/users/me", &[]).await;
    assert_eq!(r.status, 401);
    let b = r.json();
    assert_eq!(b["code"], "authentication.required");
    assert_eq!(b["message"], "No authentication bearer token specified in authorization header.");
    assert_eq!(b["status"], 401);
    assert_eq!(b["contextId"].as_str().unwrap().len(), 36);
    assert_eq!(b["details"], json!([]));
    assert_eq!(b["errors"], json!([]));
    assert_eq!(r.headers["inin-correlation-id"].to_str().unwrap(), b["contextId"].as_str().unwrap());

    // Unknown bearer: the cassette holds the platform's own 401 for that case, answered exactly.
    let r = me(&cv, "not-a-token-we-issued").await;
    assert_eq!((r.status, r.text()), (401, RECORDED_401.to_string()));

    // One millisecond before expiry: still good. At expiry: 401 credentials.expired.
    advance(&cv, 86_399_000 - 1).await;
    assert_eq!(me(&cv, &token).await.status, 200);
    let now = advance(&cv, 1).await;
    assert_eq!(now["now"], "2026-01-06T08:59:59.000Z");
    let r = me(&cv, &token).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "credentials.expired");

    // Logging in again works, and the new token is good.
    let r = genesys_login(&cv, &basic("my-client", "my-secret"), "grant_type=client_credentials").await;
    let fresh = r.json()["access_token"].as_str().unwrap().to_string();
    assert_ne!(fresh, token);
    assert_eq!(me(&cv, &fresh).await.status, 200);

    // x-callvcr-clock pins the time for one request only.
    let pinned = [("authorization", format!("Bearer {fresh}")), ("x-callvcr-clock", "2026-01-09T00:00:00Z".into())];
    let h: Vec<(&str, &str)> = pinned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = get(&cv, "api.mypurecloud.com", "/api/v2/users/me", &h).await;
    assert_eq!(r.status, 401, "pinned two days ahead, the token is expired");
    assert_eq!(r.json()["code"], "credentials.expired");
    assert_eq!(me(&cv, &fresh).await.status, 200, "the pin does not move the clock");
    let bad = [("authorization", format!("Bearer {fresh}")), ("x-callvcr-clock", "yesterday".into())];
    let h: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = get(&cv, "api.mypurecloud.com", "/api/v2/users/me", &h).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("x-callvcr-clock"), "{}", r.text());

    // Expiring on demand through the admin API: by token, then all.
    let r = admin(&cv, "POST", "/mock/admin/tokens/expire", &json!({"token": fresh}).to_string()).await;
    assert_eq!(r.json(), json!({"expired": 1}));
    assert_eq!(me(&cv, &fresh).await.json()["code"], "credentials.expired");
    let t2 = genesys_login(&cv, &basic("other", "x"), "grant_type=client_credentials").await.json();
    let t3 = genesys_login(&cv, &basic("my-client", "my-secret"), "grant_type=client_credentials").await.json();
    let r = admin(&cv, "POST", "/mock/admin/tokens/expire", &json!({"client_id": "other"}).to_string()).await;
    assert_eq!(r.json(), json!({"expired": 1}));
    assert_eq!(me(&cv, t2["access_token"].as_str().unwrap()).await.status, 401);
    assert_eq!(me(&cv, t3["access_token"].as_str().unwrap()).await.status, 200);
    let r = admin(&cv, "POST", "/mock/admin/tokens/expire", "{}").await;
    assert_eq!(r.json(), json!({"expired": 1}), "only t3 was still live");

    // The journal says who answered.
    let j = admin(&cv, "GET", "/mock/admin/journal", "").await.json();
    let by: Vec<&str> = j.as_array().unwrap().iter().map(|e| e["answered_by"].as_str().unwrap()).collect();
    assert_eq!(by[0], "overlay:auth", "{j}");
    assert_eq!(by[1], "hit", "{j}");
    assert_eq!(by[2], "overlay:auth", "{j}");

    // Reset: the clock goes back to its start and issued tokens are forgotten.
    assert_eq!(admin(&cv, "POST", "/mock/admin/reset", "").await.json(), json!({"reset": true}));
    assert_eq!(admin(&cv, "GET", "/mock/admin/clock", "").await.json(), json!({"now": "2026-01-05T09:00:00.000Z"}));
    let r = me(&cv, &fresh).await;
    assert_eq!(r.status, 401);
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(&token), "an issued token reached the log");
}

async fn refresh(cv: &Callvcr, auth: &str, refresh_token: &str) -> Resp {
    genesys_login(cv, auth, &format!("grant_type=refresh_token&refresh_token={refresh_token}")).await
}

/// Runs the headless authorize step and a PKCE code exchange; returns the token response.
/// How many tokens the auth overlay lists as revoked: a refresh it accepted revokes the refresh
/// token presented, at once, even while its answer waits on virtual time.
async fn revoked(cv: &Callvcr) -> usize {
    let list = admin(cv, "GET", "/mock/admin/tokens", "").await.json();
    list.as_array().unwrap().iter().filter(|t| t["revoked"] == true).count()
}

/// Waits until the auth overlay has accepted one more refresh than the `before` revoked tokens show.
async fn wait_for_refresh_accepted(cv: &Callvcr, before: usize) {
    wait_until("the auth overlay accepting a refresh (its token revoked)", WAIT, || async move {
        revoked(cv).await > before
    })
    .await
}

async fn pkce_login(cv: &Callvcr, client: &str) -> Value {
    let verifier = "a-verifier-of-at-least-forty-three-characters-0123456789";
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
    let mut c = h1_tls(cv, "login.mypurecloud.com").await;
    let q = format!(
        "/oauth/authorize?response_type=code&client_id={client}&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&state=s-1&code_challenge={challenge}&code_challenge_method=S256"
    );
    let r = c.send("GET", &q, &[("host", "login.mypurecloud.com")], "").await;
    assert_eq!(r.status, 302, "{}", r.text());
    let loc = r.headers["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with("http://localhost/cb?code="), "{loc}");
    assert!(loc.ends_with("&state=s-1"), "{loc}");
    let code = loc.split("code=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let body = format!(
        "grant_type=authorization_code&code={code}&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&client_id={client}&code_verifier={verifier}"
    );
    let r = genesys_login(cv, "", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The code is single-use.
    let again = genesys_login(cv, "", &body).await;
    assert_eq!(again.status, 400);
    assert_eq!(again.json()["error"], "invalid_grant");
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_rejects_reuse_and_ten_parallel_refreshes_give_one_200_and_nine_409() {
    let dir = tempdir("ov-refresh");
    let cfg = "auth:\n  clients:\n    - {id: app, secret: s3cret}\n  refresh_delay_ms: 2000\n";
    let cv = start(&dir, cfg, &[]);

    // Bad credentials: the platform's body, one per case.
    let r = genesys_login(&cv, &basic("app", "wrong"), "grant_type=client_credentials").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": "invalid_client", "description": "authentication failed", "error_description": "authentication failed"})
    );
    let r = genesys_login(&cv, &basic("nobody", "x"), "grant_type=client_credentials").await;
    assert_eq!(r.json()["description"], "client not found");
    let r = genesys_login(&cv, &basic("app", "s3cret"), "grant_type=password").await;
    assert_eq!(r.json()["error"], "unsupported_grant_type");

    let t = pkce_login(&cv, "app").await;
    assert_eq!(t["token_type"], "bearer");
    let first_refresh = t["refresh_token"].as_str().expect("the code grant issues a refresh token").to_string();
    assert_eq!(me(&cv, t["access_token"].as_str().unwrap()).await.status, 200);

    // Ten refreshes at once for one client: the first is in flight for 2 s of virtual time.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (tls, ca) = (cv.tls, cv.ca_path());
        let rt = first_refresh.clone();
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(tls).await.unwrap();
            let s = tls_over(tcp, "login.mypurecloud.com", client_config(&ca, &[b"http/1.1"])).await.unwrap();
            let mut c = H1::over(s).await;
            c.send(
                "POST",
                "/oauth/token",
                &[
                    ("host", "login.mypurecloud.com"),
                    ("authorization", &basic("app", "s3cret")),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                &format!("grant_type=refresh_token&refresh_token={rt}"),
            )
            .await
        }));
    }
    // Nine answers arrive while the clock stands still; the tenth waits for it.
    let conflicts = poll(std::time::Duration::from_secs(5), || async {
        let n = tasks.iter().filter(|t| t.is_finished()).count();
        (n >= 9).then_some(n)
    })
    .await
    .unwrap_or_else(|| tasks.iter().filter(|t| t.is_finished()).count());
    assert_eq!(conflicts, 9, "nine refreshes answered at once, one held");
    advance(&cv, 2_000).await;
    let mut statuses = Vec::new();
    let mut rotated = None;
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 200 {
            rotated = Some(r.json());
        } else {
            assert_eq!(r.json()["error"], "refresh_in_progress", "{}", r.text());
        }
        statuses.push(r.status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
    let rotated = rotated.unwrap();
    let second_refresh = rotated["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(second_refresh, first_refresh, "rotation issues a new refresh token");
    assert_eq!(me(&cv, rotated["access_token"].as_str().unwrap()).await.status, 200);

    // Reusing the rotated-out refresh token: 400 invalid_grant.
    let r = refresh(&cv, &basic("app", "s3cret"), &first_refresh).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_grant");

    // The new one works (once its 2 s pass), and the access token it replaced keeps working until expiry.
    let cv_tls = (cv.tls, cv.ca_path());
    let before = revoked(&cv).await;
    let mut pending = tokio::spawn({
        let rt = second_refresh.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(cv_tls.0).await.unwrap();
            let s = tls_over(tcp, "login.mypurecloud.com", client_config(&cv_tls.1, &[b"http/1.1"])).await.unwrap();
            let mut c = H1::over(s).await;
            let auth = basic("app", "s3cret");
            let h = [
                ("host", "login.mypurecloud.com"),
                ("authorization", auth.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
            ];
            c.send("POST", "/oauth/token", &h, &format!("grant_type=refresh_token&refresh_token={rt}")).await
        }
    });
    wait_for_refresh_accepted(&cv, before).await;
    let window = std::time::Duration::from_millis(200);
    stays_pending("a refresh takes 2 s of virtual time", &mut pending, window).await;
    advance(&cv, 2_000).await;
    assert_eq!(pending.await.unwrap().status, 200);
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_refreshes_wait_for_the_first_and_then_see_the_rotation() {
    let dir = tempdir("ov-queue");
    let cfg = "auth:\n  refresh_delay_ms: 1000\n  concurrent_refresh: queue\n";
    let cv = start(&dir, cfg, &[]);
    let t = pkce_login(&cv, "spa").await;
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    let before = revoked(&cv).await;
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (tls, ca, rt) = (cv.tls, cv.ca_path(), rt.clone());
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(tls).await.unwrap();
            let s = tls_over(tcp, "login.mypurecloud.com", client_config(&ca, &[b"http/1.1"])).await.unwrap();
            let mut c = H1::over(s).await;
            let body = format!("grant_type=refresh_token&refresh_token={rt}&client_id=spa");
            c.send("POST", "/oauth/token", &[("host", "login.mypurecloud.com")], &body).await
        }));
    }
    // The first is in flight (accepted, its answer held for 1 s of virtual time); the one queued
    // behind it shows nowhere, so the window below is also its time to arrive.
    wait_for_refresh_accepted(&cv, before).await;
    for t in &mut tasks {
        let window = std::time::Duration::from_millis(150);
        stays_pending("both wait: one in flight, one queued behind it", t, window).await;
    }
    advance(&cv, 1_000).await;
    let mut out: Vec<(u16, String)> = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        out.push((r.status, r.json()["error"].as_str().unwrap_or("").to_string()));
    }
    out.sort();
    assert_eq!(out, [(200, String::new()), (400, "invalid_grant".to_string())], "the queued one used a rotated token");
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nice_tokens_are_rs256_jwts_that_verify_against_the_served_key_set() {
    let dir = tempdir("ov-nice");
    let cv = start(&dir, "", &[]);
    let mut c = h1_tls(&cv, "cxone.niceincontact.com").await;
    let disco = c.send("GET", "/.well-known/openid-configuration", &[("host", "cxone.niceincontact.com")], "").await;
    assert_eq!(disco.status, 200);
    let d = disco.json();
    assert_eq!(d["issuer"], "https://cxone.niceincontact.com");
    assert_eq!(d["jwks_uri"], "https://cxone.niceincontact.com/auth/jwks");
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));

    // The access key as the password grant, with the body labelled JSON as the NICE SDK labels it.
    let r = c
        .send(
            "POST",
            "/auth/token",
            &[
                ("host", "cxone.niceincontact.com"),
                ("authorization", &basic("cxone-client", "client-secret")),
                ("content-type", "application/json"),
            ],
            "grant_type=password&username=KEYID&password=KEYSECRET%3D%3D",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.json();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 3600);
    assert_eq!(t["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    let id_token = t["id_token"].as_str().unwrap();
    for jwt in [id_token, t["access_token"].as_str().unwrap(), t["refresh_token"].as_str().unwrap()] {
        assert_eq!(jwt.split('.').count(), 3, "{jwt}");
    }
    let header_b64 = id_token.split('.').next().unwrap();
    assert!(!header_b64.contains('-') && !header_b64.contains('_'), "the SDK decodes this header with atob");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_b64).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    let c2 = claims(id_token);
    assert!(c2["sub"].as_str().unwrap().starts_with("user:"), "{c2}");
    assert_eq!(c2["iat"], START_S);
    assert_eq!(c2["exp"], START_S + 3600);
    assert_eq!(c2["iss"], "https://cxone.niceincontact.com");

    // Verify the signature with the key the key set serves, found by kid.
    let jwks = c.send("GET", "/auth/jwks", &[("host", "cxone.niceincontact.com")], "").await.json();
    let key = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).expect("kid in the key set");
    assert_eq!((key["kty"].as_str(), key["alg"].as_str()), (Some("RSA"), Some("RS256")));
    let pk = ring::signature::RsaPublicKeyComponents {
        n: URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap(),
        e: URL_SAFE_NO_PAD.decode(key["e"].as_str().unwrap()).unwrap(),
    };
    let (input, sig) = id_token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    pk.verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, input.as_bytes(), &sig).expect("signature verifies");
    let mut tampered = input.as_bytes().to_vec();
    tampered[input.len() - 2] ^= 1;
    assert!(pk.verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, &tampered, &sig).is_err(), "control");

    // The access token opens the API; none gets 401.
    let bearer = format!("bearer {}", t["access_token"].as_str().unwrap());
    let api = "api-na1.niceincontact.com";
    let path = "/incontactapi/services/v27.0/agents";
    assert_eq!(get(&cv, api, path, &[("authorization", bearer.as_str())]).await.status, 200);
    assert_eq!(get(&cv, api, path, &[]).await.status, 401);

    // The older access-key endpoint, JSON in: the same tokens out; a missing secret is refused.
    let mut k = h1_tls(&cv, "na1.nice-incontact.com").await;
    let h = [("host", "na1.nice-incontact.com"), ("content-type", "application/json")];
    let r =
        k.send("POST", "/authentication/v1/token/access-key", &h, r#"{"accessKeyId":"K","accessKeySecret":"S"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["id_token"].is_string());
    let r = k.send("POST", "/authentication/v1/token/access-key", &h, r#"{"accessKeyId":"K"}"#).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_request");

    // The key is kept in certs/ (owner-only) and reused by the next run: a cached key set stays valid.
    let key_file = dir.join("certs/token-signing-key.pk8");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(cv.stop().0, 0);
    let cv = start(&dir, "", &[]);
    let mut c = h1_tls(&cv, "cxone.niceincontact.com").await;
    let again = c.send("GET", "/auth/jwks", &[("host", "cxone.niceincontact.com")], "").await.json();
    assert_eq!(again, jwks);
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_trips_at_exactly_the_count_and_recovers_after_retry_after_on_the_virtual_clock() {
    let dir = tempdir("ov-rate");
    // The recorded answers carry no rate-limit headers: asked for, the overlay sends them.
    let cfg = "rate_limit:\n  headers: true\n  rules:\n    - {host: api.mypurecloud.com, path: \"^/api/v2/\", limit: 5, window_s: 10}\n";
    let cv = start(&dir, cfg, &[]);
    let tok = |v: Value| v["access_token"].as_str().unwrap().to_string();
    let a = tok(genesys_login(&cv, &basic("c", "s"), "grant_type=client_credentials").await.json());
    let b = tok(genesys_login(&cv, &basic("c", "s"), "grant_type=client_credentials").await.json());
    for i in 1..=5 {
        let r = me(&cv, &a).await;
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.headers["inin-ratelimit-count"], i.to_string().as_str());
        assert_eq!(r.headers["inin-ratelimit-allowed"], "5");
    }
    let r = me(&cv, &a).await;
    assert_eq!(r.status, 429, "the sixth request within the window");
    assert_eq!(r.headers["retry-after"], "2", "5 per 10 s refills one request every 2 s");
    let body = r.json();
    assert_eq!(body["code"], "too.many.requests");
    assert_eq!(body["status"], 429);
    assert_eq!(body["message"], "Rate limit exceeded the maximum. Retry the request in [2] seconds");
    // Another token has its own bucket.
    assert_eq!(me(&cv, &b).await.status, 200);
    // Just short of Retry-After: still limited. At Retry-After: allowed again.
    advance(&cv, 1_999).await;
    assert_eq!(me(&cv, &a).await.status, 429);
    advance(&cv, 1).await;
    assert_eq!(me(&cv, &a).await.status, 200);
    assert_eq!(me(&cv, &a).await.status, 429, "one request came back, not more");
    let j = admin(&cv, "GET", "/mock/admin/journal", "").await.json();
    assert!(
        j.as_array().unwrap().iter().any(|e| e["answered_by"] == "overlay:rate-limit" && e["status"] == 429),
        "{j}"
    );
    assert_eq!(cv.stop().0, 0);

    // Switched off: no limit, no headers.
    let cv = start(&dir, cfg, &["--no-overlay", "rate-limit"]);
    let a = tok(genesys_login(&cv, &basic("c", "s"), "grant_type=client_credentials").await.json());
    for _ in 0..7 {
        let r = me(&cv, &a).await;
        assert_eq!(r.status, 200);
        assert!(!r.headers.contains_key("inin-ratelimit-count"));
    }
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_off_tokens_replay_from_the_cassette_and_bearers_are_not_checked() {
    let dir = tempdir("ov-off");
    let cv = start(&dir, "overlays:\n  disable: [auth]\n", &[]);
    let r = genesys_login(&cv, &basic("c", "s"), "grant_type=client_credentials").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["access_token"], "[REDACTED]", "the recorded (redacted) answer");
    let r = get(&cv, "api.mypurecloud.com", "/api/v2/users/me", &[]).await;
    assert_eq!(r.status, 200, "no bearer needed");
    let r = admin(&cv, "POST", "/mock/admin/tokens/expire", "{}").await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"], "overlay_off");
    let h = admin(&cv, "GET", "/mock/admin/health", "").await.json();
    assert_eq!(h["overlays"], json!(["faults", "rate-limit", "validate", "state", "crud"]));
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_errors_name_the_problem_and_cassettes_switch_without_a_restart() {
    let dir = tempdir("ov-admin");
    write_cassette(
        &dir,
        "second.jsonl",
        &[("GET", "api.mypurecloud.com", "/api/v2/users/me", "", 200, r#"{"id":"u-2"}"#)],
    );
    let cv = start(&dir, "admin:\n  token: letmein\n", &[]);
    let auth = [("authorization", "Bearer letmein")];

    let r = admin(&cv, "GET", "/mock/admin/health", "").await;
    assert_eq!(r.status, 401, "the admin token is required");
    assert!(r.json()["message"].as_str().unwrap().contains("admin.token"));

    let call = |m: &'static str, p: &'static str, b: &'static str| {
        let cv = &cv;
        async move { admin_with(cv, m, p, b, &auth).await }
    };
    let h = call("GET", "/mock/admin/health", "").await.json();
    assert_eq!(h["mode"], "replay");
    assert_eq!(h["cassette"], "o");
    assert_eq!(h["status"], "ok");

    for (m, p, b, status, code, names) in [
        ("GET", "/mock/admin/nope", "", 404, "not_found", "/mock/admin/nope"),
        ("GET", "/elsewhere", "", 404, "not_found", "/mock/admin/"),
        ("POST", "/mock/admin/clock", "{not json", 400, "bad_json", "not valid JSON"),
        ("POST", "/mock/admin/clock", "[1]", 400, "bad_json", "an array"),
        ("POST", "/mock/admin/clock", r#"{"advance":5}"#, 400, "bad_request", "unknown field `advance`"),
        (
            "POST",
            "/mock/admin/clock",
            r#"{"advance_ms":1,"set":"2026-01-01T00:00:00Z"}"#,
            400,
            "bad_request",
            "exactly one",
        ),
        ("POST", "/mock/admin/clock", r#"{"advance_ms":"soon"}"#, 400, "bad_request", "advance_ms"),
        ("POST", "/mock/admin/clock", r#"{"set":"tomorrow"}"#, 400, "bad_request", "RFC 3339"),
        ("GET", "/mock/admin/tokens/expire", "", 405, "method_not_allowed", "GET"),
        ("POST", "/mock/admin/tokens/expire", r#"{"client_id":"a","token":"b"}"#, 400, "bad_request", "not both"),
        ("POST", "/mock/admin/tokens/expire", r#"{"client_id":7}"#, 400, "bad_request", "client_id"),
        ("POST", "/mock/admin/cassette", r#"{}"#, 400, "bad_request", "name"),
        ("POST", "/mock/admin/cassette", r#"{"name":"../etc"}"#, 400, "bad_request", "not a cassette name"),
        ("POST", "/mock/admin/cassette", r#"{"name":"missing"}"#, 404, "cassette", "missing"),
    ] {
        let r = call(m, p, b).await;
        assert_eq!(r.status, status, "{m} {p} {b}: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"], code, "{m} {p} {b}: {v}");
        assert!(v["message"].as_str().unwrap().contains(names), "{m} {p} {b}: {v}");
    }

    // Set and read the clock.
    let r = call("POST", "/mock/admin/clock", r#"{"set":"2026-03-01T12:00:00+02:00"}"#).await;
    assert_eq!(r.json(), json!({"now": "2026-03-01T10:00:00.000Z"}));
    assert_eq!(call("GET", "/mock/admin/clock", "").await.json(), json!({"now": "2026-03-01T10:00:00.000Z"}));

    // Switch cassettes: the next request is answered from the other one, and everything reset.
    let token = genesys_login(&cv, &basic("c", "s"), "grant_type=client_credentials").await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(me(&cv, &token).await.text(), ME);
    let r = call("POST", "/mock/admin/cassette", r#"{"name":"second.jsonl"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["cassette"], "second");
    assert_eq!(call("GET", "/mock/admin/health", "").await.json()["cassette"], "second");
    assert_eq!(call("GET", "/mock/admin/clock", "").await.json(), json!({"now": "2026-01-05T09:00:00.000Z"}));
    assert_eq!(me(&cv, &token).await.status, 401, "the switch reset the auth overlay");
    let token = genesys_login(&cv, &basic("c", "s"), "grant_type=client_credentials").await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(me(&cv, &token).await.text(), r#"{"id":"u-2"}"#);
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validation_overlay_refuses_bodies_that_break_the_recorded_schema_as_the_platform_does() {
    let dir = tempdir("ov-validate");
    let call = r#"{"phoneNumber":"+13175550100"}"#;
    // Two recorded calls: enough evidence for the inferred schema to refuse by itself.
    write_cassette(
        &dir,
        "v.jsonl",
        &[
            ("POST", "api.mypurecloud.com", "/api/v2/conversations/calls", call, 200, r#"{"id":"c-1"}"#),
            (
                "POST",
                "api.mypurecloud.com",
                "/api/v2/conversations/calls",
                r#"{"phoneNumber":"+13175550101"}"#,
                200,
                r#"{"id":"c-2"}"#,
            ),
        ],
    );
    let post = |cv: &Callvcr, ct: &'static str, body: &'static str| {
        spawn_send(cv, "api.mypurecloud.com", "POST", "/api/v2/conversations/calls", &[("content-type", ct)], body)
    };
    let start = |cfg: &str| {
        std::fs::write(dir.join("v.yaml"), cfg).unwrap();
        Callvcr::start(&dir, &["replay", "--cassette", "v.jsonl", "--config", "v.yaml", "--no-overlay", "auth"])
    };
    let cv = start("");
    let r = post(&cv, "application/json", "{}").await.unwrap();
    assert_eq!(r.status, 400);
    let b = r.json();
    assert_eq!(b["code"], "bad.request");
    assert_eq!(b["message"], "Validation failed: `phoneNumber` is required");
    assert_eq!(b["details"][0], json!({"errorCode": "required", "fieldName": "phoneNumber"}));
    let r = post(&cv, "application/json", r#"{"phoneNumber":5}"#).await.unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "Validation failed: `phoneNumber` must be string, not integer");
    let r = post(&cv, "text/plain", "phoneNumber=+1").await.unwrap();
    assert_eq!(r.status, 415);
    assert_eq!(r.json()["code"], "unsupported.media.type");
    let r = post(&cv, "application/json", "{not json").await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("not valid JSON"));
    let r = post(&cv, "application/json", call).await.unwrap();
    assert_eq!((r.status, r.text()), (200, r#"{"id":"c-1"}"#.to_string()), "a valid body goes on to the cassette");
    let j = admin(&cv, "GET", "/mock/admin/journal", "").await.json();
    let by: Vec<&str> = j.as_array().unwrap().iter().map(|e| e["answered_by"].as_str().unwrap()).collect();
    assert_eq!(by, ["overlay:validate", "overlay:validate", "overlay:validate", "overlay:validate", "hit"]);
    let detail = j[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("schema inferred from 2 recorded requests (first #"),
        "the refusal names its evidence: {detail}"
    );
    assert_eq!(cv.stop().0, 0);

    // One recorded call is thin evidence: the schema warns, and the request goes on (to a miss).
    write_cassette(
        &dir,
        "one.jsonl",
        &[("POST", "api.mypurecloud.com", "/api/v2/conversations/calls", call, 200, r#"{"id":"c-1"}"#)],
    );
    std::fs::write(dir.join("v.yaml"), "").unwrap();
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "one.jsonl", "--config", "v.yaml", "--no-overlay", "auth"]);
    let r = post(&cv, "application/json", "{}").await.unwrap();
    assert_eq!(r.status, 404, "warned, not refused: {}", r.text());
    let (_, log) = cv.stop();
    assert!(
        log.contains("validation (thin evidence, warn only): Validation failed: `phoneNumber` is required"),
        "{log}"
    );
    assert!(log.contains("schema inferred from 1 recorded request (first #"), "{log}");
    // A route that declares enforce refuses on the same single sample.
    std::fs::write(
        dir.join("v.yaml"),
        "validate:\n  routes:\n    - {path: \"^/api/v2/conversations/calls$\", mode: enforce}\n",
    )
    .unwrap();
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "one.jsonl", "--config", "v.yaml", "--no-overlay", "auth"]);
    assert_eq!(post(&cv, "application/json", "{}").await.unwrap().status, 400);
    assert_eq!(cv.stop().0, 0);

    // warn: logged, the request goes on (here to a miss, since the cassette holds no such body).
    let cv = start("validate:\n  routes:\n    - {path: \"^/api/v2/conversations/calls$\", mode: warn}\n");
    let r = post(&cv, "application/json", "{}").await.unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.headers["x-callvcr-miss"], "1");
    let (_, log) = cv.stop();
    assert!(log.contains("validation (warn only): Validation failed: `phoneNumber` is required"), "{log}");

    // Pinned required fields, beyond what the recording showed.
    let cv = start(
        "validate:\n  required:\n    - {method: POST, path: \"^/api/v2/conversations/calls$\", fields: [callerId]}\n",
    );
    let r = post(&cv, "application/json", call).await.unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "Validation failed: `callerId` is required");
    assert_eq!(cv.stop().0, 0);

    // off, and the overlay switched off, both let it through.
    let cv = start("validate:\n  mode: off\n");
    assert_eq!(post(&cv, "application/json", "{}").await.unwrap().status, 404);
    assert_eq!(cv.stop().0, 0);
}
