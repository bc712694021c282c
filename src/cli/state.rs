//! `callvcr state ...`: the state machines a cassette shows (learned transitions per resource),
//! printed as `proxy.yaml` text to review or pin.

use std::path::PathBuf;

use clap::Subcommand;

use super::{fail, EXIT_OK};

/// `callvcr state` subcommands.
#[derive(Subcommand, Debug)]
pub(super) enum StateCmd {
    /// Print the transitions observed per resource in a cassette, as `state.machines` entries.
    /// Replay uses them as the allowed moves where no preset or declared machine applies.
    Learn {
        /// Cassette name, or a `.jsonl` / `.har` file.
        #[arg(long)]
        cassette: String,
        /// Directory holding cassettes.
        #[arg(long, value_name = "DIR", default_value = "cassettes")]
        cassettes: PathBuf,
    },
}

/// Runs one `state` subcommand.
pub(super) fn run(c: StateCmd) -> i32 {
    match c {
        StateCmd::Learn { cassette, cassettes } => {
            let (label, c) = match crate::cassette::store::load(&cassette, &cassettes) {
                Ok(x) => x,
                Err(e) => return fail(e.to_string()),
            };
            let learned = crate::overlay::state::learn(&c.exchanges);
            println!("# state machines learned from `{label}` ({} exchanges)", c.exchanges.len());
            print!("{}", crate::overlay::state::learned_yaml(&learned));
            EXIT_OK
        }
    }
}
