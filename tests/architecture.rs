//! The shape of the code, checked from its own text: the arrows between modules run one way
//! (`cli → server → listen → proxy → (overlay, cassette, upstream, ws) → (platform, config, tls,
//! clock)`; `verify` sits beside `check`, over the cassette and the upstream client), no module's parts import each other in a circle, and no source file is over 800 lines
//! (its tests apart). Reads `src/` as it is; a change that breaks a rule names the file and import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module's tier: a module may import its own tier or lower ones (higher numbers).
fn tier(module: &str) -> Option<u32> {
    Some(match module {
        "main" | "lib" | "cli" | "run" => 0,
        "server" => 1,
        "listen" | "admin" | "check" | "verify" => 2,
        "proxy" => 3,
        "overlay" | "cassette" | "upstream" | "ws" => 4,
        "platform" | "config" | "tls" | "clock" | "journal" | "timer" | "lockfile" => 5,
        "sharded" | "encoding" | "route" | "scope" => 6,
        _ => return None,
    })
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The file's text without its test module (a `#[cfg(test)]` item ends the code that counts).
fn code_of(text: &str) -> &str {
    match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// The names after `crate::` in `text` (`crate::a::b` gives `a`, `b`), and in `use crate::{a, b}`.
fn crate_paths(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for part in inner.split(',') {
                let name = ident(part.trim());
                if !name.is_empty() {
                    out.push((name, None));
                }
            }
            continue;
        }
        let first = ident(rest);
        let after = &rest[first.len()..];
        let second = after.strip_prefix("::").map(ident).filter(|s| !s.is_empty());
        if !first.is_empty() {
            out.push((first, second));
        }
    }
    out
}

struct File {
    path: PathBuf,
    top: String,
    /// The part within its top module (`cassette/index.rs` → `index`), when it is not the root.
    part: Option<String>,
    code: String,
    lines: usize,
}

fn files() -> Vec<File> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    sources(&src, &mut paths);
    paths
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "tests.rs"))
        .map(|p| {
            let rel: Vec<String> =
                p.strip_prefix(&src).unwrap().iter().map(|c| c.to_string_lossy().into_owned()).collect();
            let top = rel[0].trim_end_matches(".rs").to_string();
            let part = (rel.len() > 1).then(|| rel[1].trim_end_matches(".rs").to_string()).filter(|p| p != "mod");
            let text = std::fs::read_to_string(&p).unwrap();
            let code = code_of(&text).to_string();
            let lines = code.lines().count();
            File { path: p, top, part, code, lines }
        })
        .collect()
}

/// A circle in `graph`, when there is one (as the list of nodes around it).
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|x| x == m).unwrap();
                    let mut c = stack[from..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn modules_import_only_their_tier_and_below() {
    let mut wrong = Vec::new();
    for f in files() {
        let Some(mine) = tier(&f.top) else {
            wrong.push(format!("{}: module `{}` has no tier (add it to this test)", f.path.display(), f.top));
            continue;
        };
        for (to, _) in crate_paths(&f.code) {
            if to == f.top {
                continue;
            }
            match tier(&to) {
                Some(t) if t >= mine => {}
                Some(t) => wrong.push(format!(
                    "{}: `{}` (tier {mine}) imports `{to}` (tier {t}), above it",
                    f.path.display(),
                    f.top
                )),
                None => wrong.push(format!("{}: imports `{to}`, a module with no tier", f.path.display())),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_module_and_no_module_part_imports_in_a_circle() {
    let all = files();
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut parts: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in &all {
        for (to, sub) in crate_paths(&f.code) {
            if to != f.top {
                top.entry(f.top.clone()).or_default().insert(to);
            } else if let (Some(from), Some(sub)) = (&f.part, sub) {
                if *from != sub {
                    parts.entry(f.top.clone()).or_default().entry(from.clone()).or_default().insert(sub);
                }
            }
        }
        // `super::x` from a part names a sibling.
        if let Some(from) = &f.part {
            for (i, _) in f.code.match_indices("super::") {
                let rest = &f.code[i + "super::".len()..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                let is_module = rest[name.len()..].starts_with("::");
                if is_module && !name.is_empty() && name != *from && name != "super" {
                    parts.entry(f.top.clone()).or_default().entry(from.clone()).or_default().insert(name);
                }
            }
        }
    }
    assert_eq!(circle(&top), None, "top-level modules import each other in a circle");
    for (m, g) in &parts {
        assert_eq!(circle(g), None, "the parts of `{m}` import each other in a circle");
    }
}

#[test]
fn no_source_file_is_over_800_lines() {
    let long: Vec<String> =
        files().iter().filter(|f| f.lines > 800).map(|f| format!("{}: {} lines", f.path.display(), f.lines)).collect();
    assert!(long.is_empty(), "split these by concern:\n{}", long.join("\n"));
}

#[test]
fn the_checks_see_a_circle_and_an_upward_import() {
    // The checks themselves: a made-up graph with a circle is caught, one without is not.
    let g = |edges: &[(&str, &str)]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            m.entry(a.to_string()).or_default().insert(b.to_string());
        }
        m
    };
    assert_eq!(circle(&g(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(
        circle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        crate_paths("use crate::{clock, config::Config};\nlet x = crate::proxy::Proxy::new();"),
        vec![
            ("clock".to_string(), None),
            ("config".to_string(), None),
            ("proxy".to_string(), Some("Proxy".to_string()))
        ]
    );
    assert!(tier("proxy") < tier("overlay") && tier("overlay") < tier("config"));
}
