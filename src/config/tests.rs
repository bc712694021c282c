//! Unit tests of configuration parsing and its errors.

use super::*;

#[test]
fn defaults_cover_genesys_and_nice() {
    let c = Config::default();
    for h in [
        "api.mypurecloud.com",
        "login.usw2.pure.cloud",
        "api.mypurecloud.ie",
        "api-c32.nice-incontact.com",
        "cxone.niceincontact.com",
    ] {
        assert!(c.is_configured_host(h), "{h}");
    }
    assert!(!c.is_configured_host("example.com"));
    assert!(!c.is_configured_host("mypurecloud.com.evil.net"));
    assert!(!c.is_configured_host("evilmypurecloud.com"));
    let d = c.constraint_domains();
    assert!(d.contains(&"mypurecloud.com".to_string()));
    assert!(!d.contains(&"api.mypurecloud.com".to_string()), "covered by mypurecloud.com: {d:?}");
}

#[test]
fn unknown_key_is_located() {
    let e =
        Config::parse("hosts:\n  - api.mypurecloud.com\nlisten:\n  tsl: 1.2.3.4:5\n", Path::new("p.yaml")).unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("p.yaml:4:"), "{s}");
    assert!(s.contains("tsl"), "{s}");
}

#[test]
fn bad_host_is_located() {
    let e = Config::parse("hosts:\n  - api.mypurecloud.com\n  - 'bad host!'\n", Path::new("p.yaml")).unwrap_err();
    assert_eq!(e.at.map(|a| a.0), Some(3), "{e}");
    assert!(e.to_string().contains("not a host name"), "{e}");
}

#[test]
fn bad_resolve_and_regex_are_located() {
    let e =
        Config::parse("upstream:\n  resolve:\n    api.mypurecloud.com: nowhere\n", Path::new("p.yaml")).unwrap_err();
    assert_eq!(e.at.map(|a| a.0), Some(3), "{e}");
    let e = Config::parse("record:\n  ignore:\n    - path: '(['\n", Path::new("p.yaml")).unwrap_err();
    assert_eq!(e.at.map(|a| a.0), Some(3), "{e}");
}

#[test]
fn state_crud_and_versions_settings_are_validated_and_located() {
    let at = |text: &str| {
        let e = Config::parse(text, Path::new("p.yaml")).unwrap_err();
        (e.at.map(|a| a.0), e.to_string())
    };
    let (line, msg) =
        at("state:\n  machines:\n    - name: ticket\n      states: [new, open]\n      transitions: {new: [gone]}\n");
    assert_eq!(line, Some(3), "{msg}");
    assert!(msg.contains("`gone` is not one of its states (new, open)"), "{msg}");
    let (line, msg) = at("state:\n  machines:\n    - name: generic\n      refusal: 418\n");
    assert_eq!(line, Some(4), "{msg}");
    assert!(msg.contains("not 422, genesys or nice"), "{msg}");
    let (_, msg) = at("state:\n  machines:\n    - name: genesys-call\n      states: [a]\n");
    assert!(msg.contains("a preset keeps its states"), "{msg}");
    let (_, msg) = at("state:\n  machines:\n    - name: generic\n      timeouts_ms: {RINGING: 0}\n");
    assert!(msg.contains("at least 1"), "{msg}");
    let (line, msg) = at("state:\n  default: nosuch\n");
    assert_eq!(line, Some(2), "{msg}");
    assert!(msg.contains("known: generic, genesys-call, nice-contact"), "{msg}");
    let (line, msg) = at("state:\n  machines:\n    - name: t\n      states: [a, b]\n      triggers:\n        - {method: POST, path: widgets, to: b}\n");
    assert_eq!(line, Some(6), "{msg}");
    assert!(msg.contains("starts with /"), "{msg}");
    let (line, msg) = at("crud:\n  collections:\n    - {path: \"/api/v2/users/{userId}\"}\n");
    assert_eq!(line, Some(3), "{msg}");
    assert!(msg.contains("not a collection path"), "{msg}");
    let (line, msg) = at("versions:\n  routes:\n    - {path: x, sdk: \">= banana\", deprecated: true}\n");
    assert_eq!(line, Some(3), "{msg}");
    assert!(msg.contains("not a version range"), "{msg}");
    let (_, msg) = at("versions:\n  user_agents:\n    - {pattern: \"cxone-sdk\", name: cxone}\n");
    assert!(msg.contains("needs a group around the version"), "{msg}");

    let c = Config::parse(
        "state:\n  machines:\n    - name: generic\n      timeouts_ms: {ringing: 30000}\n      hold: [{from: ringing, to: answered}]\n",
        Path::new("p.yaml"),
    )
    .unwrap();
    let g = &c.state.machines["generic"];
    assert_eq!(g.timeouts_ms["RINGING"], 30_000, "state names take the machine's spelling");
    assert_eq!(g.holds[0].to, "ANSWERED");
    assert_eq!(c.crud.len(), 2, "the default collections");
}

#[test]
fn overlay_settings_are_validated_and_located() {
    let at = |text: &str| {
        let e = Config::parse(text, Path::new("p.yaml")).unwrap_err();
        (e.at.map(|a| a.0), e.to_string())
    };
    let (line, msg) = at("overlays:\n  disable: [auth, ratelimit]\n");
    assert_eq!(line, Some(2), "{msg}");
    assert!(msg.contains("`ratelimit` is not an overlay") && msg.contains("rate-limit"), "{msg}");
    let (line, msg) = at("clock:\n  frozen: true\n  start: next tuesday\n");
    assert_eq!(line, Some(3), "{msg}");
    assert!(msg.contains("RFC 3339"), "{msg}");
    let (line, msg) = at("rate_limit:\n  preset: lenient\n");
    assert_eq!(line, Some(2), "{msg}");
    assert!(msg.contains("genesys, strict or none"), "{msg}");
    let (line, msg) = at("rate_limit:\n  rules:\n    - {limit: 0, window_s: 1}\n");
    assert_eq!(line, Some(3), "{msg}");
    assert!(msg.contains("at least 1"), "{msg}");
    let (_, msg) = at("auth:\n  concurrent_refresh: wait\n");
    assert!(msg.contains("p.yaml:2:"), "{msg}");
    let (_, msg) = at("auth:\n  clients:\n    - {id: a}\n    - {id: a}\n");
    assert!(msg.contains("listed twice"), "{msg}");

    let c = Config::parse(
        "clock: {frozen: true, start: '2026-01-05T09:00:00Z'}\noverlays: {disable: [rate-limit]}\nrate_limit: {preset: strict}\n",
        Path::new("p.yaml"),
    )
    .unwrap();
    assert!(c.clock_frozen);
    assert_eq!(c.clock_start_ms, Some(1_767_603_600_000));
    assert!(!c.overlay_on("rate-limit") && c.overlay_on("auth"));
    assert_eq!((c.rate_rules[0].limit, c.rate_rules[0].window_ms), (5, 1_000));
    assert!(c.rate_rules[0].applies("api-na1.niceincontact.com", "/incontactapi/services/v27.0/agents"));
    let d = Config::default();
    assert_eq!((d.rate_rules[0].limit, d.rate_rules[0].window_ms), (300, 60_000));
    assert!(d.rate_rules.iter().any(|r| r.applies("api.usw2.pure.cloud", "/api/v2/users/me")));
    assert!(!d.rate_rules.iter().any(|r| r.applies("api.mypurecloud.com", "/oauth/token")));
}

#[test]
fn time_shift_takes_a_mode_or_a_map_and_a_wrong_mode_is_located() {
    let p = Path::new("p.yaml");
    assert_eq!(Config::parse("", p).unwrap().time_shift, ShiftMode::All);
    assert_eq!(Config::parse("time_shift: headers\n", p).unwrap().time_shift, ShiftMode::Headers);
    let c = Config::parse("time_shift: {mode: off, fields: [when, lastSeen]}\n", p).unwrap();
    assert_eq!((c.time_shift, c.time_shift_fields.clone()), (ShiftMode::Off, vec!["when".into(), "lastSeen".into()]));
    let c = Config::parse("time_shift:\n  fields: [when]\n", p).unwrap();
    assert_eq!(c.time_shift, ShiftMode::All);
    let msg = Config::parse("seed: 1\ntime_shift: sideways\n", p).unwrap_err().to_string();
    assert!(msg.contains("p.yaml:2:") && msg.contains("`sideways` is not a mode"), "{msg}");
}

#[test]
fn verify_names_variables_never_values_and_is_located() {
    let c = Config::default();
    assert_eq!(c.verify.credentials.client_secret, "CALLVCR_CLIENT_SECRET");
    assert_eq!((c.verify.timing_factor, c.verify.timing_min_ms), (3.0, 500));
    let ok = Config::parse(
        "verify:\n  credentials:\n    client_secret: SANDBOX_SECRET\n  timing:\n    factor: 2.5\n    min_ms: 100\n  token_url: https://login.example.test/oauth2/token\n",
        Path::new("p.yaml"),
    )
    .unwrap();
    assert_eq!(ok.verify.credentials.client_secret, "SANDBOX_SECRET");
    assert_eq!(ok.verify.credentials.client_id, "CALLVCR_CLIENT_ID", "others keep their defaults");
    assert_eq!((ok.verify.timing_factor, ok.verify.timing_min_ms), (2.5, 100));
    assert_eq!(ok.verify.token_url, Some(("login.example.test".into(), "/oauth2/token".into())));
    // A secret written where its variable's name belongs is refused, and not echoed.
    let e =
        Config::parse("verify:\n  credentials:\n    client_secret: 'hunter2-x!'\n", Path::new("p.yaml")).unwrap_err();
    assert_eq!(e.at.map(|a| a.0), Some(3), "{e}");
    assert!(e.to_string().contains("never the credential itself"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = Config::parse("verify:\n  timing:\n    factor: 0.5\n", Path::new("p.yaml")).unwrap_err();
    assert_eq!(e.at.map(|a| a.0), Some(3), "{e}");
    let e = Config::parse("verify:\n  token_url: http://x/token\n", Path::new("p.yaml")).unwrap_err();
    assert_eq!(e.at.map(|a| a.0), Some(2), "{e}");
}
