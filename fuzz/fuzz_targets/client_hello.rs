//! A ClientHello (or anything else) arriving on the TLS listener: rustls's acceptor reads it as
//! callvcr does, then the SNI goes through callvcr's host checks.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

static CONFIG: LazyLock<callvcr::config::Config> = LazyLock::new(callvcr::config::Config::default);

fuzz_target!(|data: &[u8]| {
    let mut acceptor = rustls::server::Acceptor::default();
    // Fed in two pieces, as a socket might deliver it.
    let cut = data.first().map(|b| *b as usize % (data.len() + 1)).unwrap_or(0);
    for mut piece in [&data[..cut], &data[cut..]] {
        while !piece.is_empty() {
            match acceptor.read_tls(&mut piece) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    if let Some(sni) = accepted.client_hello().server_name() {
                        let host = sni.to_ascii_lowercase();
                        let _ = CONFIG.is_configured_host(&host);
                        let _ = callvcr::fuzzing::Platform::of_host(&host);
                    }
                    return;
                }
                Ok(None) => {}
                Err(_) => return,
            }
        }
    }
});
