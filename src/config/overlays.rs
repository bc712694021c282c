//! The overlays by name, as `overlays.disable` and `--no-overlay` name them. Kept in `config` so
//! a misspelt name is refused when `proxy.yaml` and the flags are read, before any overlay exists;
//! the order of [`NAMES`] is the order the pipeline runs them in.

/// Every overlay's name, in the order they run.
pub const NAMES: &[&str] = &["faults", "auth", "rate-limit", "versions", "validate", "state", "crud"];

/// Checks an overlay name, with the list of valid ones in the error.
pub fn check_name(name: &str) -> Result<&'static str, String> {
    NAMES
        .iter()
        .copied()
        .find(|n| *n == name)
        .ok_or_else(|| format!("`{name}` is not an overlay; the overlays are {}", NAMES.join(", ")))
}
