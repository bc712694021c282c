//! Test scopes at the proxy: opening one (its recordings rewound, so a test run again gets them
//! again), what each saw with the recordings it left unused, and that as a JUnit report a CI
//! shows per test.

use super::*;

/// What one scope saw in this run, and the recordings made in it that it never used.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScopeReport {
    /// The scope's name (a test's id).
    pub name: String,
    /// Its counts and misses explained.
    #[serde(flatten)]
    pub seen: crate::scope::Seen,
    /// Recorded in this scope, never replayed in it (`METHOD host/path?query`).
    pub unused: Vec<String>,
}

impl ScopeReport {
    /// Whether the scope failed the replay: a miss, or a recording of its own left unused.
    pub fn failed(&self) -> bool {
        self.seen.misses > 0 || !self.unused.is_empty()
    }
}

impl Proxy {
    /// Opens test scope `name` (ending the one open), or ends it with `None`. Replaying, the
    /// scope's own recordings start again from its first.
    pub fn open_scope(&self, name: Option<&str>) -> Option<Arc<str>> {
        let scope = self.journal.scopes.open(name);
        if let Some(s) = &scope {
            self.index().rewind_scope(s);
            tracing::info!(scope = %s, "scope opened");
        }
        scope
    }

    /// Every scope seen in this run, in the order each first appeared.
    pub fn scopes(&self) -> Vec<ScopeReport> {
        let idx = self.index();
        self.journal
            .scopes
            .all()
            .into_iter()
            .map(|(name, seen)| ScopeReport {
                unused: self.unused_of(idx.unused_in(&name)),
                name: name.to_string(),
                seen,
            })
            .collect()
    }

    /// The run as JUnit XML: one test case per scope, its misses and unused recordings as its
    /// failure. With no scope seen, one test case for the whole cassette.
    pub fn junit(&self) -> String {
        let cassette = self.cassette_name.read().map(|s| s.clone()).unwrap_or_default();
        let mut cases = self.scopes();
        if cases.is_empty() {
            let seen = crate::scope::Seen {
                hits: self.stats.hits.get(),
                misses: self.stats.misses.load(Ordering::Relaxed),
                missed: self.missed(),
                ..Default::default()
            };
            cases.push(ScopeReport { name: cassette.clone(), seen, unused: self.unused() });
        }
        let failures = cases.iter().filter(|c| c.failed()).count();
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        x += &format!(
            "<testsuites name=\"callvcr\" tests=\"{}\" failures=\"{failures}\">\n<testsuite name=\"callvcr replay: {}\" tests=\"{}\" failures=\"{failures}\">\n",
            cases.len(),
            xml(&cassette),
            cases.len()
        );
        for c in &cases {
            let s = &c.seen;
            x += &format!("  <testcase classname=\"callvcr\" name=\"{}\">\n", xml(&c.name));
            if c.failed() {
                let message = format!("{} miss(es), {} recording(s) never replayed", s.misses, c.unused.len());
                let body: Vec<String> = s
                    .missed
                    .iter()
                    .map(|m| format!("miss: {m}"))
                    .chain(c.unused.iter().map(|u| format!("unused: {u}")))
                    .collect();
                x += &format!(
                    "    <failure type=\"callvcr.replay\" message=\"{}\">{}</failure>\n",
                    xml(&message),
                    xml(&body.join("\n"))
                );
            }
            x += &format!(
                "    <system-out>{} hit(s), {} overlay answer(s), {} fault(s) fired, {} forwarded upstream, {} refused</system-out>\n  </testcase>\n",
                s.hits, s.overlay_answers, s.faults_fired, s.upstream, s.refused
            );
        }
        x + "</testsuite>\n</testsuites>\n"
    }
}

/// `s` escaped for XML text and attributes; characters XML 1.0 cannot hold become U+FFFD.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(super::xml("a<b>&\"c'\u{1}\n"), "a&lt;b&gt;&amp;&quot;c&apos;\u{fffd}\n");
    }
}
