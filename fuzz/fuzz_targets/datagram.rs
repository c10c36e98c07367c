//! One media datagram: the classifier and the SSRC readers never panic and
//! agree with each other (what the media worker relies on to drop a packet
//! that speaks for someone else's stream).
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::media::{self, PacketKind};

fuzz_target!(|data: &[u8]| {
    let kind = media::classify(data);
    match media::media_ssrc(data) {
        Some((PacketKind::Rtp, ssrc)) => {
            assert_eq!(kind, PacketKind::Rtp);
            assert_eq!(media::rtp_ssrc(data), Some(ssrc));
            let _ = media::rtp_header(data);
        }
        Some((PacketKind::Rtcp, ssrc)) => {
            assert_eq!(kind, PacketKind::Rtcp);
            assert_eq!(media::rtcp_sender_ssrc(data), Some(ssrc));
        }
        Some((other, _)) => panic!("media_ssrc gave {other:?}"),
        None => {}
    }
    let mut sources = Vec::new();
    if media::rtcp_sources(data, &mut sources) {
        assert!(!sources.is_empty());
        // The first source claimed is the sender the quick check reads.
        if kind == PacketKind::Rtcp {
            assert_eq!(media::rtcp_sender_ssrc(data), sources.first().copied());
        }
    }
});
