//! One STUN datagram: parsing never panics, and a request that parses gets
//! answers (success and error) that a client parses back, with the
//! transaction id and the address it was sent from.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use proto::media::{self, BindingResponse};

fuzz_target!(|data: &[u8]| {
    let Ok(req) = media::parse_binding_request(data) else {
        return;
    };
    let from: SocketAddr = ([127, 0, 0, 1], 40000).into();
    if let Some(ok) = media::binding_success(data, from) {
        assert_eq!(
            media::parse_binding_response(&ok, req.transaction),
            Some(BindingResponse::Success(from))
        );
    }
    if let Some(err) = media::binding_error(data, 401, "unknown media token") {
        assert!(matches!(
            media::parse_binding_response(&err, req.transaction),
            Some(BindingResponse::Error(401, _))
        ));
    }
});
