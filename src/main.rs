//! The `callvcr` binary: parses the command line and exits with its code.

fn main() {
    std::process::exit(callvcr::cli::main());
}
