//! One control line, as a client may send it: the parser never panics, a
//! refusal always says what is wrong, and what parses survives a round trip
//! through the wire format (what a client would send for it means the same).
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::control::{self, ErrorCode};

fuzz_target!(|data: &[u8]| {
    let request = control::parse_client_request(data);
    match request.message {
        Ok(msg) => {
            let line = control::to_line(&msg);
            let again = control::parse_client_line(line.strip_suffix(b"\n").unwrap_or(&line));
            assert_eq!(
                again.as_ref(),
                Ok(&msg),
                "round trip of {}",
                String::from_utf8_lossy(&line)
            );
            // The native front-end takes every parsed message.
            let _ = router::native::command(msg);
        }
        Err(e) => {
            assert!(!e.message.is_empty(), "an error without a message");
            if e.code == ErrorCode::BadField {
                assert!(
                    e.message.contains('`') || e.message.contains("field"),
                    "{}",
                    e.message
                );
            }
        }
    }
});
