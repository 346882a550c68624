//! Fuzz the Engine.IO server session: any sequence of requests, frames and clock ticks never
//! panics, `Closed` is emitted at most once, and a closed session has no timer left.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use wschat::proto::engineio::{
    ServerEvent, ServerSession, SessionConfig, Timestamp, TransportKind,
};

/// Milliseconds on a fake clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Ms(u64);

impl Timestamp for Ms {
    fn add_duration(self, d: Duration) -> Option<Self> {
        u64::try_from(d.as_millis())
            .ok()
            .and_then(|x| self.0.checked_add(x))
            .map(Ms)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let config = SessionConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 256,
        ..SessionConfig::default()
    };
    let kind = if first & 1 == 0 {
        TransportKind::Polling
    } else {
        TransportKind::WebSocket
    };
    let mut now = Ms(0);
    let mut s = ServerSession::new("fuzz", kind, config, now);
    let mut closed = 0;
    // Each op: one byte of opcode, one byte of length, then that many bytes of argument.
    while let Some((&op, tail)) = rest.split_first() {
        let len = tail.first().copied().unwrap_or(0) as usize;
        let arg = tail
            .get(1..1 + len.min(tail.len().saturating_sub(1)))
            .unwrap_or_default();
        rest = tail.get(1 + arg.len()..).unwrap_or_default();
        let text = String::from_utf8_lossy(arg);
        match op % 10 {
            0 => {
                let _ = s.handle_poll(now);
            }
            1 => s.handle_poll_aborted(now),
            2 => {
                let _ = s.handle_post(&text, now);
            }
            3 => {
                let _ = s.handle_ws_attach(now);
            }
            4 => {
                let _ = s.handle_ws_text(&text, now);
            }
            5 => {
                let _ = s.handle_ws_binary(arg, now);
            }
            6 => s.handle_ws_closed(now),
            7 => {
                let _ = s.send_message(text.into_owned());
            }
            8 => s.close(now),
            _ => {
                now = Ms(now.0 + u64::from(arg.first().copied().unwrap_or(0)) * 8);
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.handle_timeout(now);
                }
            }
        }
        while s.poll_transmit().is_some() {}
        while let Some(e) = s.poll_event() {
            if matches!(e, ServerEvent::Closed(_)) {
                closed += 1;
            }
        }
    }
    assert!(closed <= 1);
    assert_eq!(closed == 1, s.is_closed());
    if s.is_closed() {
        assert_eq!(s.poll_timeout(), None);
    }
});
