//! A seed session's media leg: a UDP socket of its own, bound by STUN to its
//! room's media worker as a native client's is, so the worker forwards to it
//! and from it exactly as for any member (the floor enforced, no echo to the
//! talker, mute, statistics). The front-end re-frames the seed's raw PCM into
//! RTP L16 on this leg and back: byte order swapped (seed PCM is
//! little-endian, RFC 3551 L16 big-endian), sample runs split and joined.
//! Nothing is decoded.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proto::codec::Codec;
use proto::media::{self, PacketKind};
use tokio::net::UdpSocket;

/// The largest datagram a seed sends (seed 002's JPEG frames: the most one
/// IPv4 UDP datagram carries).
pub const SEED_DATAGRAM: usize = 65_507;

/// Samples in one RTP packet made from seed PCM: 1,024 bytes of payload,
/// within the router's 1,500-byte datagrams (seed 000's 2,048-byte
/// datagrams become two packets).
pub const SAMPLES_PER_PACKET: usize = 512;

/// STUN attempts when binding a leg, and how long each waits.
const BIND_TRIES: u32 = 10;
const BIND_WAIT: Duration = Duration::from_millis(200);

/// A seed front-end's own UDP socket (the seed's port), with room for its
/// clients' bursts.
pub fn seed_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// Swaps the two bytes of every 16-bit sample of `src` onto `dst` (a
/// trailing odd byte is dropped): little-endian PCM to L16 and back.
pub fn swap16(src: &[u8], dst: &mut Vec<u8>) {
    dst.reserve(src.len());
    for s in src.chunks_exact(2) {
        dst.push(s[1]);
        dst.push(s[0]);
    }
}

/// Seed PCM of any packet size re-cut into the seed's own frame size (seed
/// 004's 1,024-sample lines, 001's 882 samples): whole frames come out in
/// order; beyond `max_frames` waiting, the oldest samples are dropped (a
/// receiver that cannot keep up loses audio, it does not build a delay).
#[derive(Debug)]
pub struct Rechunk {
    buf: Vec<u8>,
    frame: usize,
    max_frames: usize,
}

impl Rechunk {
    pub fn new(frame_bytes: usize, max_frames: usize) -> Self {
        Self {
            buf: Vec::new(),
            frame: frame_bytes.max(1),
            max_frames: max_frames.max(1),
        }
    }

    pub fn push(&mut self, pcm: &[u8]) {
        self.buf.extend_from_slice(pcm);
        let max = self.frame * self.max_frames;
        if self.buf.len() > max {
            // Keep whole samples: drop an even number of bytes.
            let over = (self.buf.len() - max + 1) & !1;
            self.buf.drain(..over.min(self.buf.len()));
        }
    }

    pub fn pop(&mut self) -> Option<Vec<u8>> {
        (self.buf.len() >= self.frame).then(|| self.buf.drain(..self.frame).collect())
    }

    /// Forgets what waits (the talker stopped).
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

/// Sums several talkers' PCM for one receiver, for seed clients that play
/// what they receive without mixing (003): each [`Mixer::tick`] (one frame
/// time) adds up one frame from every talker that has one, sample by
/// sample, and clamps the sum to 16 bits (saturation). Arithmetic on samples,
/// nothing decoded. A talker's samples wait at most `max_frames` frames
/// (the oldest go); a talker with less than a frame contributes it once it
/// has been quiet for two frames (the end of a burst).
#[derive(Debug)]
pub struct Mixer {
    frame: usize,
    max_frames: usize,
    frame_time: Duration,
    sources: std::collections::HashMap<u32, Talker>,
}

#[derive(Debug)]
struct Talker {
    samples: std::collections::VecDeque<i16>,
    last: Instant,
}

impl Mixer {
    pub fn new(frame_samples: usize, frame_time: Duration, max_frames: usize) -> Self {
        Self {
            frame: frame_samples.max(1),
            max_frames: max_frames.max(1),
            frame_time,
            sources: std::collections::HashMap::new(),
        }
    }

    /// Little-endian PCM from the talker `ssrc`.
    pub fn push(&mut self, ssrc: u32, pcm: &[u8], now: Instant) {
        let t = self.sources.entry(ssrc).or_insert_with(|| Talker {
            samples: std::collections::VecDeque::new(),
            last: now,
        });
        t.last = now;
        t.samples.extend(
            pcm.chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
        let max = self.frame * self.max_frames;
        if t.samples.len() > max {
            let over = t.samples.len() - max;
            t.samples.drain(..over);
        }
    }

    /// One frame of the sum, little-endian; `None` when nobody talks.
    pub fn tick(&mut self, now: Instant) -> Option<Vec<u8>> {
        let mut sum = vec![0i32; self.frame];
        let mut any = false;
        let stale = self.frame_time * 2;
        for t in self.sources.values_mut() {
            let quiet = now.saturating_duration_since(t.last) >= stale;
            let whole = t.samples.len() >= self.frame;
            let tail = quiet && !t.samples.is_empty();
            if !whole && !tail {
                continue;
            }
            any = true;
            let n = t.samples.len().min(self.frame);
            for (acc, s) in sum.iter_mut().zip(t.samples.drain(..n)) {
                *acc += i32::from(s);
            }
        }
        // Talkers gone quiet for a second are forgotten.
        self.sources.retain(|_, t| {
            !t.samples.is_empty() || now.saturating_duration_since(t.last) < Duration::from_secs(1)
        });
        any.then(|| {
            sum.iter()
                .map(|s| (*s).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
                .flat_map(i16::to_le_bytes)
                .collect()
        })
    }
}

/// The sending half's RTP state.
struct RtpOut {
    seq: u16,
    /// Timestamp of the next sample.
    ts: u32,
    /// When the last packet went, and how long its samples last.
    last: Option<(Instant, Duration)>,
}

/// One session's leg to its media worker.
pub struct Leg {
    socket: UdpSocket,
    codec: &'static Codec,
    ssrc: u32,
    out: Mutex<RtpOut>,
    video_ssrc: u32,
    /// The video sequence number, and when the leg began (video
    /// timestamps count 90 kHz from there).
    video_out: Mutex<(u16, Instant)>,
}

/// One RTP packet of the room's media, as [`Leg::recv_media`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Media {
    Audio(Heard),
    /// RTP JPEG (RFC 2435): its sender, timestamp, marker bit and payload.
    Video {
        ssrc: u32,
        ts: u32,
        marker: bool,
        payload: Vec<u8>,
    },
}

/// One RTP packet of the room's audio, as seed PCM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    /// Its sender's SSRC.
    pub ssrc: u32,
    /// Little-endian 16-bit samples.
    pub pcm: Vec<u8>,
}

impl Leg {
    /// A leg for the session with `token` and audio SSRC `ssrc`, bound at
    /// the media worker `worker` by STUN (retried, as a client would).
    pub async fn bind(
        worker: SocketAddr,
        token: &str,
        ssrcs: proto::control::Ssrcs,
        codec: &'static Codec,
        seed: u64,
    ) -> io::Result<Leg> {
        let local: SocketAddr = if worker.is_ipv4() {
            ([127, 0, 0, 1], 0).into()
        } else {
            (std::net::Ipv6Addr::LOCALHOST, 0).into()
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(worker).await?;
        let mut buf = vec![0u8; 2048];
        for _ in 0..BIND_TRIES {
            let (req, tid) = media::binding_request(token).map_err(io::Error::other)?;
            socket.send(&req).await?;
            let deadline = tokio::time::Instant::now() + BIND_WAIT;
            while let Ok(got) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                let n = got?;
                if media::parse_binding_response(&buf[..n], tid).is_some() {
                    return Ok(Leg {
                        socket,
                        codec,
                        ssrc: ssrcs.audio,
                        out: Mutex::new(RtpOut {
                            seq: seed as u16,
                            ts: (seed >> 16) as u32,
                            last: None,
                        }),
                        video_ssrc: ssrcs.video,
                        video_out: Mutex::new(((seed >> 8) as u16, Instant::now())),
                    });
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the media worker did not answer the leg's STUN binding",
        ))
    }

    pub fn codec(&self) -> &'static Codec {
        self.codec
    }

    /// Sends little-endian PCM (any whole number of samples) into the room
    /// as RTP L16, [`SAMPLES_PER_PACKET`] samples a packet. The timestamp
    /// follows the samples, and jumps over a pause (a new talk burst, which
    /// is marked) so receivers' jitter buffers play it on time.
    pub fn send_pcm(&self, pcm: &[u8], now: Instant) {
        let Ok(mut out) = self.out.lock() else { return };
        let rate = self.codec.clock_rate;
        let mut marker = false;
        if let Some((at, lasts)) = out.last {
            let gap = now.saturating_duration_since(at);
            if gap > lasts * 2 + Duration::from_millis(20) {
                let behind = (gap.saturating_sub(lasts).as_secs_f64() * f64::from(rate)) as u32;
                out.ts = out.ts.wrapping_add(behind);
                marker = true;
            }
        } else {
            marker = true;
        }
        let mut payload = Vec::with_capacity(SAMPLES_PER_PACKET * 2);
        let mut samples_sent = 0usize;
        for chunk in pcm.chunks(SAMPLES_PER_PACKET * 2) {
            payload.clear();
            swap16(chunk, &mut payload);
            if payload.is_empty() {
                continue;
            }
            let samples = payload.len() / 2;
            let packet = media::build_rtp(
                self.codec.payload_type,
                out.seq,
                out.ts,
                self.ssrc,
                marker,
                &payload,
            );
            marker = false;
            // A full socket buffer loses this packet, as the network would.
            let _ = self.socket.try_send(&packet);
            out.seq = out.seq.wrapping_add(1);
            out.ts = out.ts.wrapping_add(samples as u32);
            samples_sent += samples;
        }
        let lasts = Duration::from_secs_f64(samples_sent as f64 / f64::from(rate.max(1)));
        out.last = Some((now, lasts));
    }

    /// Sends one video frame's RTP JPEG payloads (from
    /// [`super::jpeg::packetize`]) into the room, the last with the marker
    /// bit, stamped with the time it is sent.
    pub fn send_video(&self, payloads: &[Vec<u8>]) {
        let Ok(mut out) = self.video_out.lock() else {
            return;
        };
        let ts = (out.1.elapsed().as_micros() * 9 / 100) as u32;
        let n = payloads.len();
        for (i, p) in payloads.iter().enumerate() {
            let packet = media::build_rtp(
                super::jpeg::PAYLOAD_TYPE,
                out.0,
                ts,
                self.video_ssrc,
                i + 1 == n,
                p,
            );
            let _ = self.socket.try_send(&packet);
            out.0 = out.0.wrapping_add(1);
        }
    }

    /// The next packet of the room's media: audio in the room's codec (as
    /// seed PCM) or JPEG video; anything else is skipped.
    pub async fn recv_media(&self, buf: &mut [u8]) -> io::Result<Media> {
        loop {
            let n = self.socket.recv(buf).await?;
            let data = &buf[..n];
            if media::classify(data) != PacketKind::Rtp {
                continue;
            }
            let Some((h, pt, payload)) = media::rtp_payload(data) else {
                continue;
            };
            if pt == super::jpeg::PAYLOAD_TYPE {
                return Ok(Media::Video {
                    ssrc: h.ssrc,
                    ts: h.timestamp,
                    marker: h.marker,
                    payload: payload.to_vec(),
                });
            }
            if pt != self.codec.payload_type || !self.codec.is_l16() {
                continue;
            }
            let mut pcm = Vec::with_capacity(payload.len());
            swap16(payload, &mut pcm);
            return Ok(Media::Audio(Heard { ssrc: h.ssrc, pcm }));
        }
    }

    /// The next packet of the room's audio in the room's codec, as seed
    /// PCM; other packets (video, RTCP, other payload types) are skipped.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Heard> {
        loop {
            let n = self.socket.recv(buf).await?;
            let data = &buf[..n];
            if media::classify(data) != PacketKind::Rtp {
                continue;
            }
            let Some((h, pt, payload)) = media::rtp_payload(data) else {
                continue;
            };
            if pt != self.codec.payload_type || !self.codec.is_l16() {
                continue;
            }
            let mut pcm = Vec::with_capacity(payload.len());
            swap16(payload, &mut pcm);
            return Ok(Heard { ssrc: h.ssrc, pcm });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm_is_recut_into_whole_frames_and_a_backlog_is_bounded() {
        let mut r = Rechunk::new(8, 2);
        r.push(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(r.pop(), None);
        r.push(&[7, 8, 9, 10]);
        assert_eq!(r.pop(), Some(vec![1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(r.pop(), None);
        // 2 + 20 bytes wait, at most 16 are kept: the newest.
        r.push(&(11..31).collect::<Vec<u8>>());
        assert_eq!(r.pop(), Some((15..23).collect::<Vec<u8>>()));
        assert_eq!(r.pop(), Some((23..31).collect::<Vec<u8>>()));
        assert_eq!(r.pop(), None);
    }

    fn le(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    #[test]
    fn talkers_are_summed_per_frame_with_saturation() {
        let t0 = Instant::now();
        let frame = Duration::from_millis(25);
        let mut m = Mixer::new(4, frame, 4);
        assert_eq!(m.tick(t0), None, "nobody talks");
        m.push(1, &le(&[1000, -1000, 30_000, -30_000]), t0);
        m.push(2, &le(&[2000, -2000, 30_000, -30_000]), t0);
        m.push(3, &le(&[3000, 0, -30_000, 0]), t0);
        assert_eq!(
            m.tick(t0),
            Some(le(&[6000, -3000, 30_000, i16::MIN])),
            "summed in 32 bits, then clamped"
        );
        // One talker alone passes unchanged, re-cut into frames.
        m.push(1, &le(&[1, 2, 3, 4, 5, 6]), t0);
        assert_eq!(m.tick(t0), Some(le(&[1, 2, 3, 4])));
        assert_eq!(m.tick(t0), None, "half a frame waits for more…");
        assert_eq!(
            m.tick(t0 + frame * 2),
            Some(le(&[5, 6, 0, 0])),
            "…until its talker has been quiet for two frames"
        );
        // A backlog is bounded: the newest frames are kept.
        for k in 0..10i16 {
            m.push(2, &le(&[k; 4]), t0);
        }
        assert_eq!(m.tick(t0), Some(le(&[6; 4])));
    }

    #[test]
    fn samples_swap_byte_order_and_odd_bytes_drop() {
        let mut out = Vec::new();
        swap16(&[1, 2, 3, 4, 5], &mut out);
        assert_eq!(out, [2, 1, 4, 3]);
        let mut back = Vec::new();
        swap16(&out, &mut back);
        assert_eq!(back, [1, 2, 3, 4]);
    }
}
