//! The seed front-ends' parsers (docs/compat.md): whatever a seed client
//! sends, none panics, and a JPEG frame that goes out as RTP JPEG comes back
//! with the same scan data and tables.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router::compat::{chat, jpeg, meeting, ptt, tip, voip};

fuzz_target!(|data: &[u8]| {
    // Seed 000's unframed words, seed 003's back-to-back objects, in two
    // reads split where the input says.
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut p = ptt::Parser::default();
    p.push(&data[..cut]);
    while p.next_input().is_some() {}
    p.push(&data[cut..]);
    while p.next_input().is_some() {}
    let mut t = tip::Parser::default();
    t.push(&data[..cut]);
    while t.next_input().is_some() {}
    t.push(&data[cut..]);
    while t.next_input().is_some() {}
    // Seed 004's lines, seed 001's requests.
    for line in data.split(|b| *b == b'\n') {
        let _ = chat::parse(line);
    }
    let _ = voip::parse(data);
    // Seed 002's frames and datagrams.
    let mut f = meeting::Frames::default();
    f.push(data);
    while let Some(frame) = f.next_frame() {
        if frame == meeting::Frame::TooLong {
            break;
        }
    }
    let _ = meeting::classify(data);
    // JPEG both ways.
    if let Ok(frame) = jpeg::parse(data) {
        let (scan, tables) = (frame.scan.to_vec(), frame.tables.clone());
        let packets = jpeg::packetize(data, 1200).unwrap_or_else(|e| panic!("parsed, then {e}"));
        let mut d = jpeg::Depacketizer::new();
        let mut back = None;
        for (i, p) in packets.iter().enumerate() {
            back = d.push(1, i + 1 == packets.len(), p);
        }
        if scan.len() <= jpeg::MAX_FRAME_BYTES - 1024 {
            let back = back.unwrap_or_else(|| panic!("no frame back"));
            let again = jpeg::parse(&back).unwrap_or_else(|e| panic!("rebuilt frame: {e}"));
            assert_eq!(again.scan, &scan[..]);
            assert_eq!(again.tables, tables);
        }
    }
    let mut d = jpeg::Depacketizer::new();
    for (i, chunk) in data.chunks(97).enumerate() {
        let _ = d.push(i as u32 / 3, i % 3 == 2, chunk);
    }
});
