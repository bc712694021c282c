//! The `callvcr` binary: parses the command line and exits with its code.

/// Runs the command line and exits with its code: 0 ok, 1 misses in strict replay, 2 bad usage
/// or configuration (`callvcr::cli::EXIT_*`).
fn main() {
    std::process::exit(callvcr::cli::main());
}
