//! Whole JPEG frames ↔ RTP JPEG (RFC 2435), by re-framing: the entropy-coded
//! scan data travels untouched; only the headers around it change. A seed
//! client's baseline JPEG (standard Huffman tables, 4:2:0 or 4:2:2) becomes
//! RTP packets whose JPEG header carries its type, size and quantisation
//! tables in band (Q = 255); RTP JPEG from a native client (GStreamer's
//! `rtpjpegpay`, or any RFC 2435 sender) becomes a whole JFIF frame again,
//! with the tables the RFC implies.
//!
//! RFC 2435 gives width and height in units of 8 pixels. A JPEG's scan data
//! always covers whole MCUs (16 × 8 pixels for 4:2:2, 16 × 16 for 4:2:0),
//! so a frame whose size is not a multiple of the MCU (the seed's 426 × 240
//! and 854 × 480) is sent at its MCU-padded size (432 × 240, 864 × 480):
//! receivers decode the encoder's padding columns too, and nothing is
//! re-encoded. Frames RFC 2435 cannot carry at all (progressive, greyscale,
//! other sampling, wider or taller than 2,040 pixels) are refused.

use std::fmt;

/// The RTP payload type of JPEG (RFC 3551, static).
pub const PAYLOAD_TYPE: u8 = 26;
/// The RTP clock of video.
pub const CLOCK_RATE: u32 = 90_000;
/// The largest frame reassembled from RTP (a seed datagram's JPEG at most).
pub const MAX_FRAME_BYTES: usize = 65_507 - 40;

/// Why a JPEG frame cannot go as RTP JPEG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    NotJpeg,
    Truncated,
    /// Not baseline sequential (e.g. progressive).
    NotBaseline,
    /// Not three components with 4:2:0 or 4:2:2 sampling and tables 0/1.
    Layout,
    TooLarge,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refused::NotJpeg => "not a JPEG",
            Refused::Truncated => "a truncated JPEG",
            Refused::NotBaseline => "not a baseline JPEG",
            Refused::Layout => "not YUV 4:2:0 or 4:2:2 with two quantisation tables",
            Refused::TooLarge => "larger than RFC 2435 describes",
        })
    }
}

/// What RFC 2435's main header says about a frame, and its scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// 0: 4:2:2, 1: 4:2:0 (plus 64 with restart markers).
    pub kind: u8,
    /// In units of 8 pixels (MCU-padded).
    pub width8: u8,
    pub height8: u8,
    /// The true size, from the frame header.
    pub width: u16,
    pub height: u16,
    /// Quantisation tables 0 and 1, zig-zag order, 64 or 128 bytes each.
    pub tables: Vec<u8>,
    /// Bit i: table i has 16-bit entries.
    pub precision: u8,
    pub restart_interval: u16,
    /// Entropy-coded data, up to (not including) EOI.
    pub scan: &'a [u8],
}

/// Reads a baseline JFIF frame's headers.
pub fn parse(jpeg: &[u8]) -> Result<Frame<'_>, Refused> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return Err(Refused::NotJpeg);
    }
    let mut tables: [Option<(bool, Vec<u8>)>; 4] = Default::default();
    let mut sof: Option<(u16, u16, u8, [u8; 3])> = None;
    let mut restart_interval = 0u16;
    let mut i = 2;
    loop {
        // Markers may be padded with 0xFF.
        while jpeg.get(i) == Some(&0xFF) && jpeg.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (jpeg.get(i), jpeg.get(i + 1)) else {
            return Err(Refused::Truncated);
        };
        i += 2;
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            continue;
        }
        if marker == 0xD9 {
            return Err(Refused::Truncated); // EOI before a scan
        }
        let len = match jpeg.get(i..i + 2) {
            Some(b) => usize::from(u16::from_be_bytes([b[0], b[1]])),
            None => return Err(Refused::Truncated),
        };
        let Some(body) = jpeg.get(i + 2..i + len).filter(|_| len >= 2) else {
            return Err(Refused::Truncated);
        };
        match marker {
            0xDB => {
                let mut b = body;
                while let Some((&pq_tq, rest)) = b.split_first() {
                    let wide = pq_tq >> 4 != 0;
                    let n = if wide { 128 } else { 64 };
                    let id = usize::from(pq_tq & 0x0F);
                    if id > 3 || rest.len() < n {
                        return Err(Refused::Truncated);
                    }
                    tables[id] = Some((wide, rest[..n].to_vec()));
                    b = &rest[n..];
                }
            }
            0xC0 | 0xC1 => {
                if body.len() < 6 + 9 || body[0] != 8 || body[5] != 3 {
                    return Err(Refused::Layout);
                }
                let height = u16::from_be_bytes([body[1], body[2]]);
                let width = u16::from_be_bytes([body[3], body[4]]);
                let c = &body[6..15];
                // Components 1, 2, 3: Y at 2×1 or 2×2 with table 0, Cb and
                // Cr at 1×1 with table 1.
                if c[4] != 0x11 || c[7] != 0x11 || c[2] != 0 || c[5] != 1 || c[8] != 1 {
                    return Err(Refused::Layout);
                }
                sof = Some((width, height, c[1], [c[0], c[3], c[6]]));
            }
            0xC2..=0xCF if marker != 0xC4 && marker != 0xC8 && marker != 0xCC => {
                return Err(Refused::NotBaseline);
            }
            0xDD => {
                if body.len() < 2 {
                    return Err(Refused::Truncated);
                }
                restart_interval = u16::from_be_bytes([body[0], body[1]]);
            }
            0xDA => {
                let (width, height, sampling, _) = sof.ok_or(Refused::Truncated)?;
                let (kind, mcu_h) = match sampling {
                    0x21 => (0u8, 8u32),
                    0x22 => (1u8, 16u32),
                    _ => return Err(Refused::Layout),
                };
                let w = u32::from(width).div_ceil(16) * 16;
                let h = u32::from(height).div_ceil(mcu_h) * mcu_h;
                if width == 0 || height == 0 || w > 2040 || h > 2040 {
                    return Err(Refused::TooLarge);
                }
                let (Some((w0, t0)), Some((w1, t1))) = (&tables[0], &tables[1]) else {
                    return Err(Refused::Layout);
                };
                let mut scan = &jpeg[i + len..];
                if let Some(end) = scan.windows(2).rposition(|m| m == [0xFF, 0xD9]) {
                    scan = &scan[..end];
                }
                let mut t = t0.clone();
                t.extend_from_slice(t1);
                return Ok(Frame {
                    kind: kind + if restart_interval > 0 { 64 } else { 0 },
                    width8: (w / 8) as u8,
                    height8: (h / 8) as u8,
                    width,
                    height,
                    tables: t,
                    precision: u8::from(*w0) | (u8::from(*w1) << 1),
                    restart_interval,
                    scan,
                });
            }
            _ => {}
        }
        i += len;
    }
}

/// Cuts one JPEG frame into RTP JPEG payloads of at most `max_payload`
/// bytes each (the RTP header not included); the last is the frame's end
/// (its packet carries the marker bit).
pub fn packetize(jpeg: &[u8], max_payload: usize) -> Result<Vec<Vec<u8>>, Refused> {
    let f = parse(jpeg)?;
    let mut out = Vec::new();
    let mut offset = 0usize;
    loop {
        let mut p = Vec::with_capacity(max_payload);
        p.push(0); // type-specific
        p.extend_from_slice(&(offset as u32).to_be_bytes()[1..]);
        p.extend_from_slice(&[f.kind, 255, f.width8, f.height8]);
        if f.kind >= 64 {
            p.extend_from_slice(&f.restart_interval.to_be_bytes());
            p.extend_from_slice(&0xFFFFu16.to_be_bytes()); // F = L = 1, count 0x3FFF
        }
        if offset == 0 {
            p.extend_from_slice(&[0, f.precision]);
            p.extend_from_slice(&(f.tables.len() as u16).to_be_bytes());
            p.extend_from_slice(&f.tables);
        }
        let room = max_payload.saturating_sub(p.len()).max(1);
        let take = room.min(f.scan.len() - offset);
        p.extend_from_slice(&f.scan[offset..offset + take]);
        offset += take;
        out.push(p);
        if offset >= f.scan.len() || offset >= 1 << 24 {
            return Ok(out);
        }
    }
}

/// RFC 2435 Appendix A: the tables a Q factor of 1-99 stands for, in
/// zig-zag order.
pub fn tables_for_q(q: u8) -> Vec<u8> {
    const LUMA: [u8; 64] = [
        16, 11, 12, 14, 12, 10, 16, 14, 13, 14, 18, 17, 16, 19, 24, 40, 26, 24, 22, 22, 24, 49, 35,
        37, 29, 40, 58, 51, 61, 60, 57, 51, 56, 55, 64, 72, 92, 78, 64, 68, 87, 69, 55, 56, 80,
        109, 81, 87, 95, 98, 103, 104, 103, 62, 77, 113, 121, 112, 100, 120, 92, 101, 103, 99,
    ];
    const CHROMA: [u8; 64] = [
        17, 18, 18, 24, 21, 24, 47, 26, 26, 47, 99, 66, 56, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99,
        99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
        99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    ];
    let q = u32::from(q.clamp(1, 99));
    let factor = if q < 50 { 5000 / q } else { 200 - q * 2 };
    LUMA.iter()
        .chain(CHROMA.iter())
        .map(|&v| ((u32::from(v) * factor + 50) / 100).clamp(1, 255) as u8)
        .collect()
}

// JPEG Annex K.3: the standard Huffman tables RFC 2435 frames use.
const DC_LUMA_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const DC_CHROMA_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const AC_LUMA_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d];
const AC_LUMA_VALUES: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5,
    0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
    0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
];
const AC_CHROMA_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
const AC_CHROMA_VALUES: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0,
    0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26,
    0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5,
    0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
    0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
    0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
];

fn segment(out: &mut Vec<u8>, marker: u8, body: &[u8]) {
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// One frame's RFC 2435 main header, as a JFIF frame's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    kind: u8,
    q: u8,
    width8: u8,
    height8: u8,
    restart_interval: u16,
}

/// Writes a whole JFIF frame from a reassembled RTP JPEG frame.
fn jfif(h: &Header, tables: &[u8], precision: u8, scan: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(scan.len() + 700);
    out.extend_from_slice(&[0xFF, 0xD8]);
    let mut at = 0;
    let mut dqt = Vec::new();
    for id in 0..2u8 {
        let wide = precision & (1 << id) != 0;
        let n = if wide { 128 } else { 64 };
        let Some(t) = tables.get(at..at + n) else {
            break;
        };
        dqt.push((u8::from(wide) << 4) | id);
        dqt.extend_from_slice(t);
        at += n;
    }
    segment(&mut out, 0xDB, &dqt);
    if h.restart_interval > 0 {
        segment(&mut out, 0xDD, &h.restart_interval.to_be_bytes());
    }
    let (w, ht) = (u16::from(h.width8) * 8, u16::from(h.height8) * 8);
    let y_sampling = if h.kind & 0x3F == 0 { 0x21 } else { 0x22 };
    let mut sof = vec![8];
    sof.extend_from_slice(&ht.to_be_bytes());
    sof.extend_from_slice(&w.to_be_bytes());
    sof.extend_from_slice(&[3, 1, y_sampling, 0, 2, 0x11, 1, 3, 0x11, 1]);
    segment(&mut out, 0xC0, &sof);
    let mut dht = Vec::new();
    for (class_id, bits, values) in [
        (0x00u8, &DC_LUMA_BITS, &DC_VALUES[..]),
        (0x10, &AC_LUMA_BITS, &AC_LUMA_VALUES[..]),
        (0x01, &DC_CHROMA_BITS, &DC_VALUES[..]),
        (0x11, &AC_CHROMA_BITS, &AC_CHROMA_VALUES[..]),
    ] {
        dht.push(class_id);
        dht.extend_from_slice(bits);
        dht.extend_from_slice(values);
    }
    segment(&mut out, 0xC4, &dht);
    segment(&mut out, 0xDA, &[3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]);
    out.extend_from_slice(scan);
    if !scan.ends_with(&[0xFF, 0xD9]) {
        out.extend_from_slice(&[0xFF, 0xD9]);
    }
    out
}

/// Reassembles RTP JPEG payloads into whole JFIF frames: fragments of one
/// timestamp in offset order, the frame done at the marker bit. A frame
/// with a gap, or overtaken by the next before its end, is dropped.
#[derive(Debug, Default)]
pub struct Depacketizer {
    ts: Option<u32>,
    header: Option<Header>,
    tables: Vec<u8>,
    precision: u8,
    scan: Vec<u8>,
    broken: bool,
    /// In-band tables seen per Q ≥ 128 (a sender may send them once).
    cached: std::collections::HashMap<u8, (u8, Vec<u8>)>,
}

impl Depacketizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// One packet's payload; a whole frame when `marker` ends one.
    pub fn push(&mut self, ts: u32, marker: bool, payload: &[u8]) -> Option<Vec<u8>> {
        if self.ts != Some(ts) {
            self.ts = Some(ts);
            self.header = None;
            self.scan.clear();
            self.broken = false;
        }
        let frame = self.add(payload);
        if frame.is_none() {
            self.broken = true;
        }
        if !marker || self.broken {
            return None;
        }
        let h = self.header.take()?;
        self.ts = None;
        let out = jfif(&h, &self.tables, self.precision, &self.scan);
        self.scan.clear();
        (out.len() <= MAX_FRAME_BYTES).then_some(out)
    }

    /// Adds one fragment; `None` when it does not fit the frame so far.
    fn add(&mut self, p: &[u8]) -> Option<()> {
        if self.broken || p.len() < 8 {
            return None;
        }
        let offset = u32::from_be_bytes([0, p[1], p[2], p[3]]) as usize;
        let h = Header {
            kind: p[4],
            q: p[5],
            width8: p[6],
            height8: p[7],
            restart_interval: 0,
        };
        if h.kind & 0x3F > 1 || h.q == 0 || h.width8 == 0 || h.height8 == 0 {
            return None;
        }
        let mut rest = &p[8..];
        let mut h = h;
        if h.kind >= 64 {
            let r = rest.get(..4)?;
            h.restart_interval = u16::from_be_bytes([r[0], r[1]]);
            rest = &rest[4..];
        }
        if offset != self.scan.len() {
            return None; // a gap (or a duplicate)
        }
        if offset == 0 {
            if h.q >= 128 {
                let qh = rest.get(..4)?;
                let precision = qh[1];
                let len = usize::from(u16::from_be_bytes([qh[2], qh[3]]));
                let t = rest.get(4..4 + len)?;
                rest = &rest[4 + len..];
                if len > 0 {
                    self.cached.insert(h.q, (precision, t.to_vec()));
                }
                let (precision, t) = self.cached.get(&h.q)?;
                self.precision = *precision;
                self.tables = t.clone();
            } else {
                self.precision = 0;
                self.tables = tables_for_q(h.q);
            }
            self.header = Some(h);
        } else if self.header.as_ref().map(|s| (s.kind, s.width8, s.height8))
            != Some((h.kind, h.width8, h.height8))
        {
            return None;
        }
        if self.scan.len() + rest.len() > MAX_FRAME_BYTES {
            return None;
        }
        self.scan.extend_from_slice(rest);
        Some(())
    }
}

#[cfg(test)]
/// A minimal baseline 4:2:0 JFIF frame around `scan`, `w` × `h`.
pub(crate) fn test_frame(w: u16, h: u16, scan: &[u8]) -> Vec<u8> {
    let head = Header {
        kind: 1,
        q: 255,
        width8: 0,
        height8: 0,
        restart_interval: 0,
    };
    let mut j = jfif(&head, &tables_for_q(50), 0, scan);
    // Put the true size in the frame header.
    let sof = j
        .windows(2)
        .position(|m| m == [0xFF, 0xC0])
        .unwrap_or_else(|| unreachable!());
    j[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    j[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u16, h: u16, scan: &[u8]) -> Vec<u8> {
        test_frame(w, h, scan)
    }

    #[test]
    fn the_standard_tables_have_their_sizes() {
        let sum = |b: &[u8; 16]| b.iter().map(|&x| usize::from(x)).sum::<usize>();
        assert_eq!(sum(&DC_LUMA_BITS), DC_VALUES.len());
        assert_eq!(sum(&DC_CHROMA_BITS), DC_VALUES.len());
        assert_eq!(sum(&AC_LUMA_BITS), AC_LUMA_VALUES.len());
        assert_eq!(sum(&AC_CHROMA_BITS), AC_CHROMA_VALUES.len());
        // Q 50 is the standard tables themselves.
        let t = tables_for_q(50);
        assert_eq!((t[0], t[1], t[64], t.len()), (16, 11, 17, 128));
    }

    #[test]
    fn a_frame_goes_out_and_comes_back_whole_at_its_mcu_padded_size() {
        let scan: Vec<u8> = (0..5000u32).map(|i| (i % 200) as u8).collect();
        let jpeg = frame(426, 240, &scan);
        let f = parse(&jpeg).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((f.kind, f.width8, f.height8), (1, 54, 30));
        assert_eq!((f.width, f.height), (426, 240));
        assert_eq!(f.scan, &scan[..]);
        let packets = packetize(&jpeg, 1000).unwrap_or_else(|e| panic!("{e}"));
        assert!(packets.len() > 5 && packets.iter().all(|p| p.len() <= 1000));
        let mut d = Depacketizer::new();
        let n = packets.len();
        let mut got = None;
        for (i, p) in packets.iter().enumerate() {
            got = d.push(7, i + 1 == n, p);
        }
        let back = got.unwrap_or_else(|| panic!("no frame"));
        let g = parse(&back).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((g.width, g.height), (432, 240), "MCU-padded");
        assert_eq!(g.scan, &scan[..]);
        assert_eq!(g.tables, f.tables);
        // A lost fragment loses the frame, not the next one.
        for (i, p) in packets.iter().enumerate() {
            if i != 2 {
                assert_eq!(d.push(8, i + 1 == n, p), None);
            }
        }
        let mut again = None;
        for (i, p) in packets.iter().enumerate() {
            again = d.push(9, i + 1 == n, p);
        }
        assert_eq!(again.as_deref(), Some(&back[..]));
    }

    #[test]
    fn frames_rfc_2435_cannot_carry_are_refused_and_garbage_does_not_panic() {
        assert_eq!(parse(b"GIF89a"), Err(Refused::NotJpeg));
        let jpeg = frame(320, 240, &[1, 2, 3]);
        for cut in 0..jpeg.len() - 40 {
            let _ = parse(&jpeg[..cut]);
        }
        let mut progressive = jpeg.clone();
        let sof = progressive
            .windows(2)
            .position(|m| m == [0xFF, 0xC0])
            .unwrap_or_else(|| unreachable!());
        progressive[sof + 1] = 0xC2;
        assert_eq!(parse(&progressive), Err(Refused::NotBaseline));
        assert_eq!(parse(&frame(4000, 240, &[1])), Err(Refused::TooLarge));
        let mut d = Depacketizer::new();
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
            let _ = d.push(1, true, &junk);
        }
        // Q < 128: the tables come from the Q factor.
        let mut p = vec![0, 0, 0, 0, 1, 50, 40, 30];
        p.extend_from_slice(&[9, 9, 9]);
        let f = d.push(2, true, &p).unwrap_or_else(|| panic!("no frame"));
        let g = parse(&f).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((g.width, g.height, g.scan), (320, 240, &[9u8, 9, 9][..]));
        assert_eq!(g.tables, tables_for_q(50));
    }
}
