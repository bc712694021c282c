//! WebSocket frames from a client of a replayed session: arbitrary bytes after the handshake go
//! through callvcr's session (tungstenite's framing, size limits, close codes, the protocol's own
//! replies), which must end when the client goes away, never panic or hang.
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use callvcr::cassette::{Index, Matcher, Redactor};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static RT: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap());

fuzz_target!(|data: &[u8]| {
    RT.block_on(async {
        let mut cfg = callvcr::config::WsConfig::default();
        cfg.max_message_bytes = 4096;
        cfg.queue = 8;
        let timer = Arc::new(callvcr::fuzzing::Timer::new(Arc::new(callvcr::clock::Clock::frozen(0))));
        let hub = Arc::new(callvcr::fuzzing::Hub::new(
            cfg,
            None,
            Vec::new(),
            timer,
            Arc::new(callvcr::fuzzing::Ids::new(1)),
            Arc::new(callvcr::proxy::Journal::default()),
            None,
        ));
        let matcher = Matcher::new(
            &callvcr::config::MatchConfig::default(),
            Redactor::new(&callvcr::config::RedactConfig::default()),
        );
        let index = Arc::new(Index::new(Vec::new(), &matcher));
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let opened = hub.open("wss://streaming.mypurecloud.com/channels/fuzz", false);
        let session = tokio::spawn(hub.clone().serve(opened, server, 0, index, callvcr::fuzzing::Platform::Genesys));
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut sink)).await;
        drop(client);
        let ended = tokio::time::timeout(Duration::from_secs(5), session).await;
        assert!(ended.is_ok(), "the session did not end after its client left");
    });
});
