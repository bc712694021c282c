//! Request fingerprints and the matcher: arbitrary method, host, path, query, headers and body
//! (JSON, form, bytes), with ignored JSON paths and query parameters, two requests compared.
#![no_main]

use std::sync::LazyLock;

use callvcr::cassette::fingerprint::differences;
use callvcr::fuzzing::decode_pairs;
use callvcr::cassette::{Matcher, Redactor};
use libfuzzer_sys::fuzz_target;

static MATCHER: LazyLock<Matcher> = LazyLock::new(|| {
    let mut m = callvcr::config::MatchConfig::default();
    m.headers = vec!["x-tenant".into()];
    m.ignore_json_paths = vec!["meta.requestId".into(), "items.*.ts".into()];
    m.ignore_query = vec!["_".into()];
    let mut r = callvcr::config::RedactConfig::default();
    r.pii = true;
    Matcher::new(&m, Redactor::new(&r))
});

fuzz_target!(|data: &[u8]| {
    // Fields separated by 0xff: method, host, path, query, content type, tenant, body.
    let parts: Vec<&[u8]> = data.splitn(7, |b| *b == 0xff).collect();
    let text = |i: usize| parts.get(i).map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
    let (method, host, path, query, ct, tenant) = (text(0), text(1), text(2), text(3), text(4), text(5));
    let body = parts.get(6).copied().unwrap_or(&[]);
    let header = |name: &str| match name {
        "content-type" => Some(ct.as_str()),
        "x-tenant" => Some(tenant.as_str()),
        _ => None,
    };
    let q = if query.is_empty() { None } else { Some(query.as_str()) };
    let a = MATCHER.fingerprint_parts(&method, &host, &path, q, header, body);
    let b = MATCHER.fingerprint_parts(&method, &host, &path, None, |_| None, &body[..body.len() / 2]);
    let d = differences(&a, &b);
    assert_eq!(differences(&a, &a).score, 0, "a request differs from itself");
    let _ = (d.score, decode_pairs(&query));
});
