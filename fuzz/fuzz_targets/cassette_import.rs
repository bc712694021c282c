//! Cassette import: JSON Lines and HAR 1.2 text, then what replay does with what parsed (index,
//! a miss explained, audit, HAR export).
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use callvcr::cassette::{Index, Matcher, Redactor};
use libfuzzer_sys::fuzz_target;

static REDACTOR: LazyLock<Redactor> = LazyLock::new(|| Redactor::new(&callvcr::config::RedactConfig::default()));
static MATCHER: LazyLock<Matcher> =
    LazyLock::new(|| Matcher::new(&callvcr::config::MatchConfig::default(), REDACTOR.clone()));

fuzz_target!(|data: &[u8]| {
    let Some((kind, rest)) = data.split_first() else { return };
    let exchanges = if kind % 2 == 0 {
        match callvcr::cassette::store::parse_jsonl(rest, Path::new("fuzz.jsonl")) {
            Ok(c) => {
                let _ = callvcr::cassette::tools::audit(&c, &REDACTOR);
                let _ = callvcr::cassette::tools::to_har(&c);
                c.exchanges
            }
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        }
    } else {
        let Ok(text) = std::str::from_utf8(rest) else { return };
        match callvcr::cassette::tools::from_har(text, &REDACTOR) {
            Ok(x) => x,
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        }
    };
    let probe = exchanges.first().map(|e| MATCHER.fingerprint(&e.request));
    let index = Index::new(exchanges, &MATCHER);
    if let Some(fp) = probe {
        assert!(matches!(index.next(&fp), Some(Ok(_))), "a recorded request matches itself");
        let _ = index.near_misses(&fp, 3);
    }
});
