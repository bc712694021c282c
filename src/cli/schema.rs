//! `callvcr schema ...`: OpenAPI 3.1 or JSON Schema inferred from a cassette, and the drift between
//! two recordings.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{fail, EXIT_OK, EXIT_STRICT};
use crate::cassette::schema::{diff, Model};

/// `callvcr schema` subcommands.
#[derive(Subcommand, Debug)]
pub(super) enum SchemaCmd {
    /// Write the schema inferred from one or more cassettes (merged: each refines the last):
    /// OpenAPI 3.1 (default) or JSON Schema.
    Export {
        /// Cassette name, or a `.jsonl` / `.har` file (repeatable).
        #[arg(long, required = true)]
        cassette: Vec<String>,
        /// `openapi` or `jsonschema`.
        #[arg(long, default_value = "openapi", value_parser = ["openapi", "jsonschema"])]
        format: String,
        /// Output file (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Directory holding cassettes.
        #[arg(long, value_name = "DIR", default_value = "cassettes")]
        cassettes: PathBuf,
    },
    /// What changed between two recordings: operations, fields, types, required fields.
    Diff {
        /// The earlier recording (name or file).
        a: String,
        /// The later recording (name or file).
        b: String,
        /// Exit 1 when anything drifted.
        #[arg(long = "fail-on-drift")]
        fail_on_drift: bool,
        /// Directory holding cassettes.
        #[arg(long, value_name = "DIR", default_value = "cassettes")]
        cassettes: PathBuf,
    },
}

/// The schema model of one cassette (name or file), with the label that names it in output.
fn model_of(name: &str, dir: &Path) -> Result<(String, Model), String> {
    let mut m = Model::default();
    let label = add_to(&mut m, name, dir)?;
    Ok((label, m))
}

/// Folds one cassette (name or file) into `m`; gives the label it was loaded as.
fn add_to(m: &mut Model, name: &str, dir: &Path) -> Result<String, String> {
    let (label, c) = crate::cassette::store::load(name, dir).map_err(|e| e.to_string())?;
    m.add(&c.exchanges);
    Ok(label)
}

/// Runs one `schema` subcommand.
pub(super) fn run(c: SchemaCmd) -> i32 {
    match c {
        SchemaCmd::Export { cassette, format, out, cassettes } => {
            let mut model = Model::default();
            let mut labels = Vec::new();
            for c in &cassette {
                match add_to(&mut model, c, &cassettes) {
                    Ok(l) => labels.push(l),
                    Err(e) => return fail(e),
                }
            }
            let label = labels.join(" + ");
            let doc = if format == "openapi" { model.to_openapi(&label) } else { model.to_jsonschema() };
            let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
            match out {
                Some(p) => match std::fs::write(&p, text) {
                    Ok(()) => {
                        println!("wrote {} operations to {}", model.ops.len(), p.display());
                        EXIT_OK
                    }
                    Err(e) => fail(format!("cannot write {}: {e}", p.display())),
                },
                None => {
                    print!("{text}");
                    EXIT_OK
                }
            }
        }
        SchemaCmd::Diff { a, b, fail_on_drift, cassettes } => {
            let (ma, mb) = match (model_of(&a, &cassettes), model_of(&b, &cassettes)) {
                (Ok((_, x)), Ok((_, y))) => (x, y),
                (Err(e), _) | (_, Err(e)) => return fail(e),
            };
            let drift = diff(&ma, &mb);
            if drift.is_empty() {
                println!("no drift between `{a}` and `{b}`");
                return EXIT_OK;
            }
            for d in &drift {
                println!("{d}");
            }
            if fail_on_drift {
                EXIT_STRICT
            } else {
                EXIT_OK
            }
        }
    }
}
