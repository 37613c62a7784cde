//! Every byte string a client can send as a text frame goes through `protocol::decode`: it must answer with a
//! frame or a classified error, never panic, and never echo an unbounded unknown action.
#![no_main]

use crier_edge::protocol::{DecodeError, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(DecodeError::UnknownAction(action)) = decode(data) {
        assert!(action.chars().count() <= 64);
    }
});
