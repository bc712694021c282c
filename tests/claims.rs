//! Tokens callvcr mints carry the claims the platform put in them. Recorded from the stand-in
//! sandbox, a NICE sign-in whose tokens carry tenant, agent and business-unit claims is stored
//! with those claims and no signature (the audit finds no secret); replayed, the token callvcr
//! mints carries the same claims, its times on the virtual clock, and a signature that verifies
//! against the key set callvcr serves; the tenant's configuration, asked for by the tenant id in
//! the minted token, hits its recording.

mod support;

use base64::Engine;
use serde_json::Value;
use support::*;

const NICE: &str = "api-na1.niceincontact.com";

async fn nice_login(cv: &Callvcr) -> Resp {
    let mut c = h1_tls(cv, NICE).await;
    let h = [("host", NICE), ("content-type", "application/x-www-form-urlencoded")];
    let body = "grant_type=password&username=KEYID-77&password=NICE-KEY-SECRET-OK&client_id=nice-app";
    c.send("POST", "/auth/token", &h, body).await
}

async fn get(cv: &Callvcr, path: &str) -> Resp {
    let mut c = h1_tls(cv, NICE).await;
    c.send("GET", path, &[("host", NICE)], "").await
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()
}

/// A JWT's header and claims (its signature not checked here).
fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let h = serde_json::from_slice(&b64(it.next().unwrap())).unwrap();
    let c = serde_json::from_slice(&b64(it.next().unwrap())).unwrap();
    (h, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_tokens_carry_the_recorded_claims_and_the_tenant_lookup_hits() {
    let dir = tempdir("claims");
    let si = start_stand_in(&dir).await;
    let cv = Callvcr::start(&dir, &record_args(&si, "nice").iter().map(String::as_str).collect::<Vec<_>>());
    let r = nice_login(&cv).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, recorded) = parts(r.json()["id_token"].as_str().unwrap());
    let tenant = recorded["tenantId"].as_str().unwrap().to_string();
    let config = format!("/.well-known/cxone-configuration?tenantId={tenant}");
    // Sent with the platform's token as a bearer: stored by its signature too.
    let bearer = format!("Bearer {}", r.json()["access_token"].as_str().unwrap());
    let mut c = h1_tls(&cv, NICE).await;
    assert_eq!(c.send("GET", &config, &[("host", NICE), ("authorization", &bearer)], "").await.status, 200);
    assert_eq!(cv.stop().0, 0);
    si.stop();

    // Stored: the claims, never a signature; the audit agrees there is no secret.
    let stored = all_bytes(&dir.join("cassettes/nice"));
    assert!(!contains(&stored, b"SECRETSIGNATURE") && !contains(&stored, b"SECRETIDSIGNATURE"));
    assert!(!contains(&stored, b"NICE-KEY-SECRET-OK") && !contains(&stored, b"SECRET-NICE-REFRESH"));
    let (code, out, err) = run(&dir, &["cassette", "audit", "nice"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = run(&dir, &["cassette", "export", "nice", "--out", "nice.jsonl"]);
    assert_eq!(code, 0, "{err}");
    let exported = std::fs::read_to_string(dir.join("nice.jsonl")).unwrap();
    let kept_bearer = format!("{}[REDACTED]", bearer.rsplit_once('.').unwrap().0.to_string() + ".");
    assert!(exported.contains(&kept_bearer), "the bearer's claims are kept: {exported}");

    // Replayed on a frozen clock: the minted token says what the platform's said.
    let start = "2026-12-02T10:00:00Z";
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "nice", "--clock-frozen", "--clock-start", start]);
    let r = nice_login(&cv).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let now_s = callvcr::clock::parse_rfc3339(start).unwrap() / 1000;
    for field in ["access_token", "id_token"] {
        let token = r.json()[field].as_str().unwrap().to_string();
        let (header, claims) = parts(&token);
        for k in ["tenantId", "agentId", "icBUId", "icClusterId", "iss", "aud", "sub"] {
            assert_eq!(claims[k], recorded[k], "{field} claim {k}: {claims}");
        }
        assert_eq!(claims["iat"], now_s, "{field} issued on the virtual clock: {claims}");
        assert!(claims["exp"].as_i64().unwrap() > now_s, "{claims}");
        assert_ne!(claims["jti"], recorded["jti"], "a fresh token id: {claims}");
        // The platform's key id, naming callvcr's key in the key set it serves (below).
        assert_eq!(header["kid"], "stand-in", "the recorded key id: {header}");

        // The signature verifies against the key set callvcr serves, found by its key id.
        let jwks = get(&cv, "/auth/jwks").await.json();
        let key = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).expect("the signing key");
        let pubkey = ring::signature::RsaPublicKeyComponents {
            n: b64(key["n"].as_str().unwrap()),
            e: b64(key["e"].as_str().unwrap()),
        };
        let (signed, sig) = token.rsplit_once('.').unwrap();
        pubkey
            .verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &b64(sig))
            .expect("the minted token verifies against the served key set");
    }
    let (_, minted) = parts(r.json()["id_token"].as_str().unwrap());
    let config = format!("/.well-known/cxone-configuration?tenantId={}", minted["tenantId"].as_str().unwrap());
    let c = get(&cv, &config).await;
    assert_eq!(c.status, 200, "{}", c.text());
    let j = journal(&cv).await;
    let e = j.iter().find(|e| e["path"] == "/.well-known/cxone-configuration").expect("journaled");
    assert_eq!(e["answered_by"], "hit", "{j:?}");
}

/// A Genesys client-credentials sign-in, through callvcr's TLS listener.
async fn genesys_login(cv: &Callvcr) -> Resp {
    let mut c = h1_tls(cv, "login.mypurecloud.com").await;
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("shape-app:shape-secret"));
    let h = [
        ("host", "login.mypurecloud.com"),
        ("authorization", auth.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    c.send("POST", "/oauth/token", &h, "grant_type=client_credentials").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tokens_are_minted_in_the_recorded_shape() {
    let dir = tempdir("claims-shape");
    let si = start_stand_in(&dir).await;
    let cv = Callvcr::start(&dir, &record_args(&si, "gen").iter().map(String::as_str).collect::<Vec<_>>());
    let r = genesys_login(&cv).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (access, refresh) = (r.json()["access_token"].as_str().unwrap().to_string(), r.json()["refresh_token"].clone());
    assert_eq!(cv.stop().0, 0);
    si.stop();
    // Stored: the shape only, never the token.
    let stored = all_bytes(&dir.join("cassettes/gen"));
    assert!(!contains(&stored, access.as_bytes()));
    assert_eq!(run(&dir, &["cassette", "export", "gen", "--out", "gen.jsonl"]).0, 0);
    let text = std::fs::read_to_string(dir.join("gen.jsonl")).unwrap();
    let ex: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    assert_eq!(ex["token_shapes"][0]["field"], "access_token");
    assert_eq!(ex["token_shapes"][0]["len"].as_u64(), Some(access.len() as u64));

    let cv = Callvcr::start(&dir, &["replay", "--cassette", "gen"]);
    let minted = genesys_login(&cv).await;
    assert_eq!(minted.status, 200, "{}", minted.text());
    let m = minted.json()["access_token"].as_str().unwrap().to_string();
    assert_ne!(m, access);
    assert_eq!(m.len(), access.len(), "minted {m}, recorded {access}");
    let alphabet = |t: &str| -> std::collections::BTreeSet<char> {
        t.chars()
            .map(|c| {
                if c.is_ascii_uppercase() {
                    'A'
                } else if c.is_ascii_digit() {
                    '0'
                } else {
                    c
                }
            })
            .collect()
    };
    assert!(alphabet(&m).is_subset(&alphabet(&access)), "minted {m} holds characters {access} never did");
    if let Some(rt) = refresh.as_str() {
        let mr = minted.json()["refresh_token"].as_str().unwrap().to_string();
        assert_eq!(mr.len(), rt.len());
        assert!(alphabet(&mr).is_subset(&alphabet(rt)), "minted refresh {mr}");
    }
    // The minted token is one the auth overlay knows.
    let mut c = h1_tls(&cv, "api.mypurecloud.com").await;
    let bearer = format!("Bearer {m}");
    let me =
        c.send("GET", "/api/v2/users/me", &[("host", "api.mypurecloud.com"), ("authorization", &bearer)], "").await;
    assert_ne!(me.status, 401, "{}", me.text());
    cv.stop();
}
