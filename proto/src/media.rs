//! Media-plane helpers: packet classification (RFC 7983 / RFC 5761), SSRC
//! extraction through `rtp-types` and `rtcp-types`, and the STUN Binding
//! exchange (RFC 5389) through `stun-types`.
//!
//! The router uses these on its hot path, so they borrow and never allocate,
//! except when building STUN messages (rare).

use std::net::SocketAddr;

pub use stun_types::message::TransactionId as StunTransaction;

use stun_types::attribute::{
    ErrorCode as StunErrorCode, Nonce, Software, Username, XorMappedAddress,
};
use stun_types::message::{
    BINDING, IntegrityAlgorithm, Message, MessageClass, MessageIntegrityCredentials, MessageWrite,
    MessageWriteExt, MessageWriteVec, ShortTermCredentials, TransactionId,
};

/// The largest datagram the router accepts or forwards.
pub const MAX_DATAGRAM: usize = 1500;
/// RTP clock rate of audio streams (Opus, RFC 7587).
pub const AUDIO_CLOCK_RATE: u32 = 48_000;
/// RTP clock rate of video streams (RFC 3551 video payloads).
pub const VIDEO_CLOCK_RATE: u32 = 90_000;

/// What a datagram is, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Stun,
    Rtp,
    Rtcp,
    /// Anything else (DTLS, ZRTP, garbage): dropped.
    Unknown,
}

/// Demultiplexes by the first byte as in RFC 7983 (0–3 STUN, 128–191 RTP/RTCP),
/// then RTP from RTCP by the second byte as in RFC 5761 (payload types 192–223
/// are RTCP).
pub fn classify(data: &[u8]) -> PacketKind {
    match data.first() {
        Some(0..=3) => PacketKind::Stun,
        Some(128..=191) => match data.get(1) {
            Some(192..=223) => PacketKind::Rtcp,
            Some(_) => PacketKind::Rtp,
            None => PacketKind::Unknown,
        },
        _ => PacketKind::Unknown,
    }
}

/// The SSRC of a well-formed RTP packet.
pub fn rtp_ssrc(data: &[u8]) -> Option<u32> {
    rtp_header(data).map(|h| h.ssrc)
}

/// The header fields the router reads from RTP: who sent it, and the sequence
/// number and timestamp its loss and jitter statistics need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    pub payload_type: u8,
    /// The marker bit (a talk burst's start, a video frame's end).
    pub marker: bool,
}

/// The header of a well-formed RTP packet.
pub fn rtp_header(data: &[u8]) -> Option<RtpHeader> {
    rtp_types::RtpPacket::parse(data).ok().map(|p| RtpHeader {
        ssrc: p.ssrc(),
        seq: p.sequence_number(),
        timestamp: p.timestamp(),
        payload_type: p.payload_type(),
        marker: p.marker_bit(),
    })
}

/// A well-formed RTP packet's header, payload type and payload (padding and
/// extensions left out), for front-ends that re-frame payloads.
pub fn rtp_payload(data: &[u8]) -> Option<(RtpHeader, u8, &[u8])> {
    let p = rtp_types::RtpPacket::parse(data).ok()?;
    let h = RtpHeader {
        ssrc: p.ssrc(),
        seq: p.sequence_number(),
        timestamp: p.timestamp(),
        payload_type: p.payload_type(),
        marker: p.marker_bit(),
    };
    let pt = p.payload_type();
    let range = p.payload_offset()..p.payload_offset() + p.payload_len();
    Some((h, pt, data.get(range)?))
}

/// The sender SSRC of a well-formed compound RTCP packet: the first source
/// [`rtcp_sources`] finds (the SSRC of its first packet, or of the first
/// chunk of an SDES). Reading the bytes at offset 4 instead was wrong for a
/// first packet that carries no SSRC (an SDES or BYE with no chunks), as a
/// fuzz target found.
pub fn rtcp_sender_ssrc(data: &[u8]) -> Option<u32> {
    let mut sources = Vec::new();
    rtcp_sources(data, &mut sources).then(|| sources.first().copied())?
}

/// Every SSRC a well-formed compound RTCP packet claims as a source of its
/// own, into `out` (cleared first): the sender of each report, feedback,
/// APP, XR and unknown packet, every SDES chunk and every BYE entry. Report
/// blocks and feedback's media SSRC name the streams reported on, which
/// are others', and are not claims. `false` if a packet is malformed. An
/// SRTCP packet of a secure room is read through [`srtcp_clear`].
pub fn rtcp_sources(data: &[u8], out: &mut Vec<u32>) -> bool {
    use rtcp_types::Packet;
    out.clear();
    let compound = match rtcp_types::Compound::parse(data) {
        Ok(c) => c,
        Err(_) => match srtcp_clear(data).map(rtcp_types::Compound::parse) {
            Some(Ok(c)) => c,
            _ => return false,
        },
    };
    for packet in compound {
        match packet {
            Err(_) => return false,
            Ok(Packet::Sr(p)) => out.push(p.ssrc()),
            Ok(Packet::Rr(p)) => out.push(p.ssrc()),
            Ok(Packet::Sdes(p)) => out.extend(p.chunks().map(|c| c.ssrc())),
            Ok(Packet::Bye(p)) => out.extend(p.ssrcs()),
            Ok(Packet::App(p)) => out.push(p.ssrc()),
            Ok(Packet::TransportFeedback(p)) => out.push(p.sender_ssrc()),
            Ok(Packet::PayloadFeedback(p)) => out.push(p.sender_ssrc()),
            Ok(Packet::Xr(p)) => out.push(p.sender_ssrc()),
            Ok(Packet::Unknown(p)) => match p.data().get(4..8) {
                Some(b) => out.push(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
                None => return false,
            },
        }
    }
    !out.is_empty()
}

/// Bytes SRTCP appends to a compound packet in a secure room: the E flag
/// and 31-bit index (4), then the 80-bit authentication tag (10).
pub const SRTCP_TRAILER: usize = 4 + 10;

/// The compound RTCP inside an SRTCP packet whose payload is not encrypted
/// (a secure room's null RTCP cipher: the E flag is clear), so the router
/// reads its reports as it would plain RTCP; `None` for an encrypted or
/// too short one. Authenticity is the receivers' check, not the router's.
pub fn srtcp_clear(data: &[u8]) -> Option<&[u8]> {
    let end = data.len().checked_sub(SRTCP_TRAILER)?;
    let (compound, trailer) = data.split_at(end);
    let encrypted = trailer.first()? & 0x80 != 0;
    (end >= 8 && !encrypted).then_some(compound)
}

/// The SSRC a router must authorize for a media datagram, with its kind.
pub fn media_ssrc(data: &[u8]) -> Option<(PacketKind, u32)> {
    match classify(data) {
        PacketKind::Rtp => rtp_ssrc(data).map(|s| (PacketKind::Rtp, s)),
        PacketKind::Rtcp => rtcp_sender_ssrc(data).map(|s| (PacketKind::Rtcp, s)),
        _ => None,
    }
}

/// A parsed STUN Binding Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRequest {
    pub transaction: TransactionId,
    /// The USERNAME attribute: Switchboard's media token.
    pub username: Option<String>,
}

/// Why a STUN datagram is not a usable Binding Request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("not a STUN message")]
    Malformed,
    #[error("not a Binding Request")]
    NotBindingRequest,
}

/// Parses a STUN Binding Request.
pub fn parse_binding_request(data: &[u8]) -> Result<BindingRequest, StunError> {
    let msg = Message::from_bytes(data).map_err(|_| StunError::Malformed)?;
    if !(msg.has_method(BINDING) && msg.has_class(MessageClass::Request)) {
        return Err(StunError::NotBindingRequest);
    }
    let username = msg
        .attribute::<Username>()
        .ok()
        .map(|u| u.username().to_owned());
    Ok(BindingRequest {
        transaction: msg.transaction_id(),
        username,
    })
}

/// Builds a Binding Request carrying `token` as USERNAME; returns the bytes and
/// the transaction id to match the answer with.
pub fn binding_request(token: &str) -> Result<(Vec<u8>, TransactionId), String> {
    let mut msg = Message::builder_request(BINDING, MessageWriteVec::new());
    let tid = msg.transaction_id();
    let user = Username::new(token).map_err(|e| e.to_string())?;
    msg.add_attribute(&user).map_err(|e| e.to_string())?;
    msg.add_fingerprint().map_err(|e| e.to_string())?;
    Ok((msg.finish(), tid))
}

/// Builds a Binding Request with USERNAME `media_id`, an optional NONCE,
/// and MESSAGE-INTEGRITY (HMAC-SHA1, RFC 5389 short-term credentials)
/// keyed by `key` (the media token).
pub fn binding_request_signed(
    media_id: &str,
    key: &str,
    nonce: Option<&str>,
) -> Result<(Vec<u8>, TransactionId), String> {
    let mut msg = Message::builder_request(BINDING, MessageWriteVec::new());
    let tid = msg.transaction_id();
    let user = Username::new(media_id).map_err(|e| e.to_string())?;
    msg.add_attribute(&user).map_err(|e| e.to_string())?;
    if let Some(n) = nonce {
        let n = Nonce::new(n).map_err(|e| e.to_string())?;
        msg.add_attribute(&n).map_err(|e| e.to_string())?;
    }
    msg.add_message_integrity(&credentials(key), IntegrityAlgorithm::Sha1)
        .map_err(|e| e.to_string())?;
    msg.add_fingerprint().map_err(|e| e.to_string())?;
    Ok((msg.finish(), tid))
}

fn credentials(key: &str) -> MessageIntegrityCredentials {
    MessageIntegrityCredentials::ShortTerm(ShortTermCredentials::new(key.to_owned()))
}

/// Whether `request` carries a MESSAGE-INTEGRITY made with `key`.
pub fn integrity_ok(request: &[u8], key: &str) -> bool {
    Message::from_bytes(request).is_ok_and(|m| m.validate_integrity(&credentials(key)).is_ok())
}

/// The NONCE attribute of a request, if any.
pub fn request_nonce(request: &[u8]) -> Option<String> {
    let m = Message::from_bytes(request).ok()?;
    m.attribute::<Nonce>().ok().map(|n| n.nonce().to_owned())
}

/// The transaction id of a STUN message, as bytes.
pub fn transaction_bytes(request: &[u8]) -> Option<[u8; 12]> {
    request.get(8..20)?.try_into().ok()
}

/// Builds the Binding Success Response telling the client its mapped address.
pub fn binding_success(request: &[u8], mapped: SocketAddr) -> Option<Vec<u8>> {
    let req = Message::from_bytes(request).ok()?;
    let mut msg = Message::builder_success(&req, MessageWriteVec::new());
    let xor = XorMappedAddress::new(mapped, req.transaction_id());
    msg.add_attribute(&xor).ok()?;
    msg.add_attribute(&Software::new("switchboard").ok()?)
        .ok()?;
    msg.add_fingerprint().ok()?;
    Some(msg.finish())
}

/// Builds a Binding Error Response (e.g. 401 for a wrong media token).
pub fn binding_error(request: &[u8], code: u16, reason: &str) -> Option<Vec<u8>> {
    let req = Message::from_bytes(request).ok()?;
    let mut msg = Message::builder_error(&req, MessageWriteVec::new());
    let err = StunErrorCode::builder(code).reason(reason).build().ok()?;
    msg.add_attribute(&err).ok()?;
    msg.add_fingerprint().ok()?;
    Some(msg.finish())
}

/// The outcome of a Binding transaction as seen by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingResponse {
    /// The router bound this address.
    Success(SocketAddr),
    /// The router refused: code and reason (401: unknown media token).
    Error(u16, String),
}

/// Parses a Binding response, checking it answers transaction `tid`.
pub fn parse_binding_response(data: &[u8], tid: TransactionId) -> Option<BindingResponse> {
    let msg = Message::from_bytes(data).ok()?;
    if !msg.has_method(BINDING) || msg.transaction_id() != tid {
        return None;
    }
    if msg.has_class(MessageClass::Success) {
        let xor = msg.attribute::<XorMappedAddress>().ok()?;
        Some(BindingResponse::Success(xor.addr(tid)))
    } else if msg.has_class(MessageClass::Error) {
        let err = msg.attribute::<StunErrorCode>().ok()?;
        Some(BindingResponse::Error(err.code(), err.reason().to_owned()))
    } else {
        None
    }
}

/// Builds a minimal RTP packet (version 2, no CSRC, no extension).
pub fn build_rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push((pt & 0x7f) | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_sender_of_a_compound_whose_first_packet_has_no_ssrc_is_its_first_source() {
        // Found by the datagram fuzz target: an SDES with no chunks first
        // (4 bytes), so offset 4 is the next packet's header, not an SSRC.
        let data = [
            0x9b, 0xca, 0, 0, 0x9b, 0xca, 0, 0, 0x9b, 0xca, 0, 1, 0xbb, 0xca, 0, 0,
        ];
        let mut sources = Vec::new();
        assert!(rtcp_sources(&data, &mut sources));
        assert_eq!(rtcp_sender_ssrc(&data), sources.first().copied());
        assert_ne!(rtcp_sender_ssrc(&data), Some(0x9bca_0000));
    }

    use super::*;

    #[test]
    fn classifies_by_first_bytes() {
        assert_eq!(classify(&[0x00, 0x01]), PacketKind::Stun);
        assert_eq!(classify(&[0x80, 96]), PacketKind::Rtp);
        assert_eq!(classify(&[0x80, 200]), PacketKind::Rtcp);
        assert_eq!(classify(&[0x81, 201]), PacketKind::Rtcp);
        assert_eq!(classify(&[22, 254]), PacketKind::Unknown); // DTLS
        assert_eq!(classify(&[]), PacketKind::Unknown);
        assert_eq!(classify(&[0x80]), PacketKind::Unknown);
    }

    #[test]
    fn rtp_ssrc_roundtrip_and_garbage() {
        let p = build_rtp(96, 7, 160, 0xdead_beef, false, &[1, 2, 3]);
        assert_eq!(media_ssrc(&p), Some((PacketKind::Rtp, 0xdead_beef)));
        assert_eq!(rtp_ssrc(&p[..8]), None);
    }

    #[test]
    fn rtcp_receiver_report_ssrc() {
        use rtcp_types::RtcpPacketWriterExt;
        let rr = rtcp_types::ReceiverReport::builder(0x1234_5678);
        let mut bytes = vec![0u8; 64];
        let n = rtcp_types::Compound::builder()
            .add_packet(rr)
            .write_into(&mut bytes)
            .unwrap_or(0);
        bytes.truncate(n);
        assert_eq!(media_ssrc(&bytes), Some((PacketKind::Rtcp, 0x1234_5678)));
        // Truncated compound is refused.
        assert_eq!(rtcp_sender_ssrc(&bytes[..6]), None);
    }

    #[test]
    fn rtcp_sources_are_every_claimed_sender_not_the_reported_streams() {
        let own = 0x0102_0304u32.to_be_bytes();
        let other = 0x0a0b_0c0du32.to_be_bytes();
        // RR from `own` with one report block about `other`: only `own`.
        let mut rr = vec![0x81, 201, 0, 7];
        rr.extend(own);
        rr.extend(other);
        rr.extend([0u8; 20]);
        let mut v = Vec::new();
        assert!(rtcp_sources(&rr, &mut v));
        assert_eq!(v, [0x0102_0304]);
        // ...then an SDES chunk and a BYE that speak for `other`.
        let mut sdes = vec![0x81, 202, 0, 3];
        sdes.extend(other);
        sdes.extend([1, 2, b'a', b'b', 0, 0, 0, 0]);
        let mut bye = vec![0x82, 203, 0, 2];
        bye.extend(own);
        bye.extend(other);
        for tail in [&sdes, &bye] {
            let compound = [rr.as_slice(), tail].concat();
            assert!(rtcp_sources(&compound, &mut v), "{compound:?}");
            assert_eq!(v.first(), Some(&0x0102_0304));
            assert!(v.contains(&0x0a0b_0c0d), "{v:?}");
        }
        // Malformed: refused.
        assert!(!rtcp_sources(&rr[..6], &mut v));
        assert!(!rtcp_sources(&[rr.as_slice(), &bye[..6]].concat(), &mut v));
    }

    #[test]
    fn srtcp_with_a_null_cipher_is_read_through_its_trailer() {
        let own = 0x0102_0304u32.to_be_bytes();
        let mut rr = vec![0x81, 201, 0, 7];
        rr.extend(own);
        rr.extend(0x0a0b_0c0du32.to_be_bytes());
        rr.extend([0u8; 20]);
        // E clear, index 5, then a 10-byte tag.
        let srtcp = [rr.as_slice(), &[0, 0, 0, 5], &[0xaa; 10]].concat();
        let mut v = Vec::new();
        assert!(rtcp_sources(&srtcp, &mut v));
        assert_eq!(v, [0x0102_0304]);
        assert_eq!(srtcp_clear(&srtcp), Some(rr.as_slice()));
        // An encrypted payload (E set) is not readable, nor a stub.
        let encrypted = [rr.as_slice(), &[0x80, 0, 0, 5], &[0xaa; 10]].concat();
        assert!(!rtcp_sources(&encrypted, &mut v));
        assert_eq!(srtcp_clear(&[0u8; 14]), None);
        assert_eq!(srtcp_clear(&[0u8; 3]), None);
    }

    #[test]
    fn stun_binding_exchange() {
        let Ok((req, tid)) = binding_request("tok-123") else {
            panic!("building a binding request failed")
        };
        assert_eq!(classify(&req), PacketKind::Stun);
        let parsed = parse_binding_request(&req);
        assert_eq!(
            parsed,
            Ok(BindingRequest {
                transaction: tid,
                username: Some("tok-123".into())
            })
        );
        let addr: SocketAddr = "127.0.0.1:40000".parse().unwrap_or_else(|_| unreachable!());
        let ok = binding_success(&req, addr).unwrap_or_default();
        assert_eq!(
            parse_binding_response(&ok, tid),
            Some(BindingResponse::Success(addr))
        );
        let err = binding_error(&req, 401, "Unauthorized").unwrap_or_default();
        assert_eq!(
            parse_binding_response(&err, tid),
            Some(BindingResponse::Error(401, "Unauthorized".into()))
        );
        assert_eq!(
            parse_binding_request(&[0, 1, 0, 0]),
            Err(StunError::Malformed)
        );
    }
}
