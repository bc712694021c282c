//! Unit tests of the auth overlay's pure core: what a token request presents, how a minted answer
//! takes the recorded one's shape, PKCE.

use super::*;
use evidence::Presented;

/// An `Authorization: Basic` value for `id` and `secret`.
fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

#[test]
fn a_token_request_presents_its_client_and_user_and_nothing_else_does() {
    let auth = basic("app-1", "s3cret");
    let p = presented("login.mypurecloud.com", "POST", "/oauth/token", Some(&auth), b"grant_type=client_credentials");
    assert_eq!(p, vec![Presented { role: "client", id: "app-1".into(), secret: Some("s3cret".into()) }]);
    // A port on the host, a password grant: the user as well.
    let p = presented(
        "login.mypurecloud.com:443",
        "POST",
        "/oauth/token",
        Some(&auth),
        b"grant_type=password&username=agent%40example.com&password=pw",
    );
    assert_eq!(p[1], Presented { role: "user", id: "agent@example.com".into(), secret: Some("pw".into()) });
    // The API host is no token endpoint, nor is a GET.
    assert!(presented("api.mypurecloud.com", "POST", "/oauth/token", Some(&auth), b"").is_empty());
    assert!(presented("login.mypurecloud.com", "GET", "/oauth/token", Some(&auth), b"").is_empty());
    assert!(!is_token_request("api.mypurecloud.com", "POST", "/oauth/token"));
    assert!(is_token_request("login.usw2.pure.cloud:443", "POST", "/oauth/token"));
}

#[test]
fn nice_access_keys_are_presented_as_keys_and_a_redacted_secret_as_none() {
    let body = br#"{"accessKeyId":"AK-1","accessKeySecret":"KS-1"}"#;
    let p = presented("cxone.niceincontact.com", "POST", "/authentication/v1/token/access-key", None, body);
    assert_eq!(p, vec![Presented { role: "access-key", id: "AK-1".into(), secret: Some("KS-1".into()) }]);
    // The NICE SDK's form body labelled JSON, sent again from a cassette: the marker is no secret.
    let form = format!("grant_type=password&username=AK-2&password={}", crate::cassette::redact::MARKER);
    let p = presented("cxone.niceincontact.com", "POST", "/auth/token", None, form.as_bytes());
    assert_eq!(p, vec![Presented { role: "access-key", id: "AK-2".into(), secret: None }]);
}

#[test]
fn a_minted_answer_takes_the_recorded_fields_order_and_headers() {
    let recorded = Answer {
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("set-cookie".into(), crate::cassette::redact::MARKER.into()),
            ("inin-correlation-id".into(), "recorded-id".into()),
        ],
        ..Answer::json(
            200,
            &json!({"access_token": "[REDACTED]", "token_type": "bearer", "expires_in": 86399, "scope": "recorded"}),
            "recorded:#1",
        )
    };
    let minted = Answer::json(
        200,
        &json!({"access_token": "MINTED", "expires_in": 600, "token_type": "Bearer", "ours_only": true}),
        "issued",
    )
    .with_header("inin-correlation-id", "fresh-id");
    let a = reshape(minted, &recorded);
    assert_eq!(
        String::from_utf8(a.body.to_vec()).unwrap(),
        r#"{"access_token":"MINTED","token_type":"bearer","expires_in":600,"scope":"recorded"}"#
    );
    assert_eq!(
        a.headers,
        vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("inin-correlation-id".to_string(), "fresh-id".to_string())
        ]
    );
    assert_eq!((a.detail.as_str(), recorded_ttl_s(&recorded)), ("issued", Some(86399)));
}

#[test]
fn pkce_s256_is_base64url_sha256() {
    assert_eq!(s256("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
}
