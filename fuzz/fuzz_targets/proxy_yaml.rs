//! `proxy.yaml`: any text parses to a configuration or a located error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match callvcr::config::Config::parse(text, std::path::Path::new("proxy.yaml")) {
        Ok(c) => {
            let _ = (c.hosts.len(), c.state.machines.len(), c.crud.len());
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("proxy.yaml"), "an error names the file: {shown}");
        }
    }
});
