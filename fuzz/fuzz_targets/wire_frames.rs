//! Every byte string a client can send on an upgraded socket goes through `inbound::MessageReader`: it must
//! yield messages or a classified error, never panic, never return a message over the cap, and never buffer
//! more than one frame's worth past the cap.
#![no_main]

use crier_edge::inbound::{Inbound, MessageReader};
use crier_edge::outbox::Outbox;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let outbox = Outbox::new(1 << 20);
    let mut reader = MessageReader::new(MAX, data);
    while let Ok(Some(message)) = reader.next(&outbox) {
        if let Inbound::Text(text) = message {
            assert!(text.len() <= MAX);
            assert!(std::str::from_utf8(&text).is_ok());
        }
    }
});
