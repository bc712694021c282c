//! `callvcr cassette ...`: list, show, remove, export (JSON Lines or HAR), import (JSON Lines or
//! HAR), audit for secrets, check that replay reproduces the recording, and prune replay-equivalent
//! duplicates.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{fail, load_config, EXIT_OK, EXIT_STRICT};
use crate::cassette::store::{read_jsonl, write_jsonl};
use crate::cassette::tools;
use crate::cassette::{Cassette, Matcher, Redactor, Store};

/// `callvcr cassette` subcommands.
#[derive(Subcommand, Debug)]
pub(super) enum CassetteCmd {
    /// List the cassettes under --cassettes: stores and exported files, with their sizes.
    Ls {
        /// Directory holding cassettes.
        #[arg(long, value_name = "DIR", default_value = "cassettes")]
        cassettes: PathBuf,
    },
    /// One line per exchange (and its WebSocket frames) of a cassette.
    Show {
        /// Cassette name, or a `.jsonl` / `.har` file.
        name: String,
        /// Directory holding cassettes.
        #[arg(long, value_name = "DIR", default_value = "cassettes")]
        cassettes: PathBuf,
    },
    /// Remove a stored cassette.
    Rm {
        /// Cassette name.
        name: String,
        /// Directory holding cassettes.
        #[arg(long, value_name = "DIR", default_value = "cassettes")]
        cassettes: PathBuf,
    },
    /// Write a cassette as JSON Lines (stable and diffable: one exchange or frame per line, JSON
    /// bodies as JSON) or as a HAR 1.2 file.
    Export {
        /// Cassette name.
        name: String,
        /// Output file (default: <cassettes>/<name>.jsonl or .har).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// `jsonl` (default) or `har`.
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "har"])]
        format: String,
        /// A note kept in the file's header line (where the recording came from).
        #[arg(long)]
        note: Option<String>,
        /// Directory holding cassettes.
        #[arg(long, value_name = "DIR", default_value = "cassettes")]
        cassettes: PathBuf,
    },
    /// Store a JSON Lines or HAR file under a name (HAR is redacted on the way in).
    Import {
        /// The `.jsonl` or `.har` file.
        file: PathBuf,
        /// Cassette name to create (replaces its contents).
        #[arg(long)]
        name: String,
        /// proxy.yaml whose redaction applies to HAR imports.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Directory holding cassettes.
        #[arg(long, value_name = "DIR", default_value = "cassettes")]
        cassettes: PathBuf,
    },
    /// Scan a cassette for secrets that slipped past redaction; exits 1 with their locations.
    Audit {
        /// Cassette name, or a `.jsonl` / `.har` file.
        name: String,
        /// proxy.yaml whose redaction lists the sensitive headers and fields.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Directory holding cassettes.
        #[arg(long, value_name = "DIR", default_value = "cassettes")]
        cassettes: PathBuf,
    },
    /// Replay the cassette's own requests, in recorded order and in process, through the overlays
    /// as configured; print every answer that differs from the recorded one (with the overlay and
    /// rule that answered) and exit 1 if any does.
    Check {
        /// Cassette name, or a `.jsonl` / `.har` file.
        name: String,
        /// proxy.yaml whose overlays and matching apply (as `replay --config`).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Overlays to switch off, as `replay --no-overlay`.
        #[arg(long = "no-overlay", value_name = "NAME")]
        no_overlay: Vec<String>,
        /// Directory holding cassettes.
        #[arg(long, value_name = "DIR", default_value = "cassettes")]
        cassettes: PathBuf,
    },
    /// Drop recordings replay cannot tell from the one before them (same request, same answer).
    Prune {
        /// Cassette name.
        name: String,
        /// Say what would go, change nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// proxy.yaml whose matching rules decide "same request".
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Directory holding cassettes.
        #[arg(long, value_name = "DIR", default_value = "cassettes")]
        cassettes: PathBuf,
    },
}

/// Reads a HAR file into a cassette, redacted with `redactor`.
fn read_har(file: &Path, redactor: &Redactor) -> Result<Cassette, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let exchanges = tools::from_har(&text, redactor).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(Cassette { exchanges, frames: Vec::new() })
}

/// A cassette by name or file (JSON Lines or HAR).
fn load_any(name: &str, dir: &Path, redactor: &Redactor) -> Result<Cassette, String> {
    if name.ends_with(".har") {
        return read_har(Path::new(name), redactor);
    }
    crate::cassette::store::load(name, dir).map(|(_, c)| c).map_err(|e| e.to_string())
}

/// Replaces a store's contents with `c`, the error as text.
fn store_all(store: &Store, c: &Cassette) -> Result<(), String> {
    store.replace_all(c).map_err(|e| e.to_string())
}

/// Bytes under `path`: a file's length, or a store directory's files summed (unreadable ones count 0).
fn size_of(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            std::fs::read_dir(path).map(|d| d.filter_map(Result::ok).map(|e| size_of(&e.path())).sum()).unwrap_or(0)
        }
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// `cassette check`: see [`crate::check`].
async fn check(name: &str, config: Option<&Path>, no_overlay: &[String], cassettes: &Path) -> i32 {
    use std::sync::Arc;
    let mut cfg = match load_config(config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    for n in no_overlay {
        match crate::overlay::check_name(n.trim()) {
            Ok(o) if !cfg.overlays_disabled.contains(&o) => cfg.overlays_disabled.push(o),
            Ok(_) => {}
            Err(m) => return fail(format!("--no-overlay: {m}")),
        }
    }
    let matcher = Matcher::new(&cfg.matching, Redactor::new(&cfg.redact));
    let opened = if name.ends_with(".har") {
        read_har(Path::new(name), matcher.redactor()).map(|c| {
            let stem = Path::new(name).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            (stem, crate::cassette::Index::new(c.exchanges, &matcher), c.frames)
        })
    } else {
        // Read as it is, writing nothing (no replay file): a check leaves the cassette as it was.
        crate::cassette::store::load(name, cassettes)
            .map(|(name, c)| (name, crate::cassette::Index::new(c.exchanges, &matcher), c.frames))
            .map_err(|e| e.to_string())
    };
    let (name, index, frames) = match opened {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let index = Arc::new(index);
    let exchanges = index.select(|_| true);
    // The virtual clock stands at the recording's start and follows its recorded times.
    let start = exchanges
        .iter()
        .find_map(|e| crate::clock::parse_rfc3339(&e.recorded_at))
        .unwrap_or_else(|| crate::clock::Clock::system().now_ms());
    let clock = Arc::new(crate::clock::Clock::frozen(start));
    // NICE tokens are signed with a key made for this check only.
    let keys = std::env::temp_dir().join(format!("callvcr-check-{}", std::process::id()));
    let dir = keys.clone();
    let nice_key: crate::overlay::auth::KeySource = Box::new(move || {
        let der = crate::tls::token_signing_key(&dir).map_err(|e| e.to_string())?;
        crate::overlay::jwt::Signer::rs256(&der).map_err(|e| e.to_string())
    });
    let ids = Arc::new(crate::overlay::Ids::new(cfg.seed));
    let overlays = crate::overlay::Overlays::from_config(&cfg, ids.clone(), nice_key, clock.now_ms(), &index);
    let names = overlays.pipeline.names();
    let proxy = Arc::new(
        crate::proxy::Proxy::replay(Arc::new(cfg), index, clock, name.clone())
            .with_overlays(overlays, ids)
            .with_frames(frames.clone()),
    );
    proxy.start_state_clock();
    let report = crate::check::check(proxy, &exchanges, &frames).await;
    let _ = std::fs::remove_dir_all(&keys);
    for d in &report.differences {
        let detail = d.detail.as_deref().map(|x| format!(" ({x})")).unwrap_or_default();
        println!("#{} {}: answered by {}{detail}", d.seq, d.request, d.answered_by);
        for line in &d.diffs {
            println!("    {line}");
        }
    }
    let ws = if report.websockets > 0 {
        format!(" (with {} WebSocket session(s), their frames compared)", report.websockets)
    } else {
        String::new()
    };
    let overlays = if names.is_empty() { "no overlays".to_string() } else { format!("overlays {}", names.join(", ")) };
    if report.differences.is_empty() {
        println!(
            "check: `{name}`: {} exchanges replayed as recorded{ws} ({overlays})",
            report.checked + report.websockets
        );
        EXIT_OK
    } else {
        println!(
            "check: `{name}`: {} of {} exchanges answered differently from the recording{ws} ({overlays})",
            report.differences.len(),
            report.checked + report.websockets
        );
        EXIT_STRICT
    }
}

/// Runs one `cassette` subcommand.
pub(super) async fn run(c: CassetteCmd) -> i32 {
    match c {
        CassetteCmd::Ls { cassettes } => {
            let Ok(dir) = std::fs::read_dir(&cassettes) else {
                return fail(format!("no cassettes directory at {}", cassettes.display()));
            };
            let mut rows: Vec<(String, String)> = Vec::new();
            for entry in dir.filter_map(Result::ok) {
                let p = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let kb = size_of(&p).div_ceil(1024);
                if p.is_dir() {
                    let pid = std::fs::read_to_string(p.join("callvcr.pid")).ok();
                    let line = match Store::open(&p, false) {
                        Ok(s) => {
                            let frames = s.load_frames().map(|f| f.len()).unwrap_or(0);
                            format!("{} exchanges, {frames} frames, {kb} KiB (sled)", s.len())
                        }
                        Err(crate::cassette::CassetteError::InUse { .. }) => format!(
                            "in use by a recording{} ({kb} KiB)",
                            pid.map(|p| format!(", pid {}", p.trim())).unwrap_or_default()
                        ),
                        Err(e) => format!("unreadable: {e}"),
                    };
                    rows.push((name, line));
                } else if name.ends_with(".jsonl") {
                    let line = match read_jsonl(&p) {
                        Ok(c) => {
                            format!("{} exchanges, {} frames, {kb} KiB (JSON Lines)", c.exchanges.len(), c.frames.len())
                        }
                        Err(e) => format!("unreadable: {e}"),
                    };
                    rows.push((name, line));
                } else if name.ends_with(".har") {
                    rows.push((name, format!("{kb} KiB (HAR)")));
                }
            }
            rows.sort();
            if rows.is_empty() {
                println!("no cassettes in {}", cassettes.display());
            }
            for (n, l) in rows {
                println!("{n:<32} {l}");
            }
            EXIT_OK
        }
        CassetteCmd::Show { name, cassettes } => {
            let red = Redactor::new(&crate::config::RedactConfig::default());
            match load_any(&name, &cassettes, &red) {
                Ok(c) => {
                    for l in tools::describe(&c) {
                        println!("{l}");
                    }
                    println!("{} exchanges, {} WebSocket frames", c.exchanges.len(), c.frames.len());
                    EXIT_OK
                }
                Err(e) => fail(e),
            }
        }
        CassetteCmd::Rm { name, cassettes } => {
            if name.contains('/') || name.starts_with('.') || name.is_empty() {
                return fail(format!("`{name}` is not a cassette name"));
            }
            let path = cassettes.join(&name);
            // Opening it proves it is a cassette and that no recording holds it.
            match Store::open_writer(&path, false) {
                Ok(s) => drop(s),
                Err(e) => return fail(e),
            }
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    println!("removed {}", path.display());
                    EXIT_OK
                }
                Err(e) => fail(format!("cannot remove {}: {e}", path.display())),
            }
        }
        CassetteCmd::Export { name, out, format, note, cassettes } => {
            let store = match Store::open(&cassettes.join(&name), false) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let all = match store.load_cassette() {
                Ok(a) => a,
                Err(e) => return fail(e),
            };
            let out = out.unwrap_or_else(|| cassettes.join(format!("{name}.{format}")));
            let written = if format == "har" {
                let text = serde_json::to_string_pretty(&tools::to_har(&all)).unwrap_or_default();
                std::fs::write(&out, text + "\n").map_err(|e| format!("cannot write {}: {e}", out.display()))
            } else {
                write_jsonl(&out, &all, note.as_deref()).map_err(|e| e.to_string())
            };
            match written {
                Ok(()) => {
                    println!(
                        "wrote {} exchanges and {} WebSocket frames to {}",
                        all.exchanges.len(),
                        if format == "har" { 0 } else { all.frames.len() },
                        out.display()
                    );
                    if format == "har" && !all.frames.is_empty() {
                        eprintln!(
                            "callvcr: note: HAR has no place for WebSocket frames; {} were left out",
                            all.frames.len()
                        );
                    }
                    EXIT_OK
                }
                Err(e) => fail(e),
            }
        }
        CassetteCmd::Import { file, name, config, cassettes } => {
            let cfg = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            let red = Redactor::new(&cfg.redact);
            // Read and check everything first: a bad file imports nothing.
            let all = if file.extension().is_some_and(|e| e == "har") {
                match read_har(&file, &red) {
                    Ok(c) => c,
                    Err(e) => return fail(e),
                }
            } else {
                match read_jsonl(&file) {
                    Ok(c) => c,
                    Err(e) => return fail(e),
                }
            };
            let store = match Store::open_writer(&cassettes.join(&name), true) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            if let Err(e) = store_all(&store, &all) {
                return fail(e);
            }
            let (exchanges, frames) = (all.exchanges.len(), all.frames.len());
            drop(all);
            // Replay starts from the replay file; one written now spares the first replay the work.
            let matcher = crate::cassette::Matcher::new(&cfg.matching, red);
            if let Err(e) = store.write_replay_file(&matcher, crate::overlay::analyses()) {
                tracing::warn!("no replay file written ({e}); the first replay writes it");
            }
            println!("imported {exchanges} exchanges and {frames} WebSocket frames into {}", store.path().display());
            EXIT_OK
        }
        CassetteCmd::Audit { name, config, cassettes } => {
            let cfg = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            let red = Redactor::new(&cfg.redact);
            // A HAR is audited as written, before any redaction.
            let keep_all = Redactor::new(&crate::config::RedactConfig {
                headers: vec![],
                fields: vec![],
                query_fields: vec![],
                pii: false,
                jwt_claims: vec![],
                replacement: cfg.redact.replacement.clone(),
            });
            let c = match load_any(&name, &cassettes, if name.ends_with(".har") { &keep_all } else { &red }) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            let found = tools::audit(&c, &red);
            if found.is_empty() {
                println!(
                    "audit: no secrets found in {} exchanges and {} WebSocket frames",
                    c.exchanges.len(),
                    c.frames.len()
                );
                return EXIT_OK;
            }
            for f in &found {
                println!("{}: {} ({})", f.location, f.kind, f.excerpt);
            }
            eprintln!("callvcr: audit found {} secret(s) in `{name}`", found.len());
            EXIT_STRICT
        }
        CassetteCmd::Check { name, config, no_overlay, cassettes } => {
            check(&name, config.as_deref(), &no_overlay, &cassettes).await
        }
        CassetteCmd::Prune { name, dry_run, config, cassettes } => {
            let cfg = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            let matcher = Matcher::new(&cfg.matching, Redactor::new(&cfg.redact));
            let store = match Store::open_writer(&cassettes.join(&name), false) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let all = match store.load_cassette() {
                Ok(a) => a,
                Err(e) => return fail(e),
            };
            let (kept, removed) = tools::prune(&all, &matcher);
            if !dry_run && removed > 0 {
                if let Err(e) = store_all(&store, &kept) {
                    return fail(e);
                }
            }
            println!(
                "{} {removed} of {} exchanges (replay answers the same without them)",
                if dry_run { "would prune" } else { "pruned" },
                all.exchanges.len()
            );
            EXIT_OK
        }
    }
}
