//! A cassette's replay file, damaged: any bytes where the file should be (the checksum made to
//! match when the first byte is odd, so the checks behind it are reached), then what replay does
//! with an index that opened: every recording served, a miss explained.
#![no_main]

use std::sync::LazyLock;

use callvcr::cassette::{replayfile, Matcher, Redactor};
use libfuzzer_sys::fuzz_target;

static MATCHER: LazyLock<Matcher> = LazyLock::new(|| {
    let red = Redactor::new(&callvcr::config::RedactConfig::default());
    Matcher::new(&callvcr::config::MatchConfig::default(), red)
});
static DIR: LazyLock<std::path::PathBuf> = LazyLock::new(|| {
    let d = std::env::temp_dir().join(format!("callvcr-fuzz-replay-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("a scratch directory");
    d
});

fuzz_target!(|data: &[u8]| {
    let Some((flag, rest)) = data.split_first() else { return };
    let mut file = rest.to_vec();
    if flag % 2 == 1 {
        replayfile::reseal(&mut file);
    }
    std::fs::write(DIR.join(replayfile::FILE_NAME), &file).expect("the scratch file");
    match replayfile::open(&DIR, &MATCHER) {
        Ok((index, _frames)) => {
            let heads: Vec<_> = index.heads().map(|h| (h.key, h.sdk.map(String::from))).collect();
            for (key, sdk) in heads {
                if let Some(Err(e)) = index.next_by_key(key, sdk.as_deref()) {
                    let _ = e.to_string();
                }
            }
            let _ = index.unused();
            if let Some(h) = index.heads().next() {
                if let Ok(e) = index.exchange(h.pos) {
                    let _ = index.near_misses(&MATCHER.fingerprint(&e.request), 3);
                }
            }
        }
        Err(replayfile::Unusable::Stale(why)) => {
            let _ = why.len();
        }
        Err(replayfile::Unusable::Missing) => {}
    }
});
