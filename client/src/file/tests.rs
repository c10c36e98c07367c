//! Reno and reassembly on virtual time: a simulated bottleneck link with a
//! finite queue, no sockets, no sleeping.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::*;

#[test]
fn reno_doubles_in_slow_start_then_grows_by_one_per_window() {
    let mut r = Reno::default();
    assert_eq!(
        (r.cwnd, r.ssthresh, r.phase()),
        (1.0, 8.0, Phase::SlowStart)
    );
    // One round trip acknowledges a whole window.
    let mut per_rtt = vec![r.cwnd];
    for _ in 0..3 {
        let window = r.cwnd as u64;
        r.on_new_ack(window);
        per_rtt.push(r.cwnd);
    }
    assert_eq!(per_rtt, [1.0, 2.0, 4.0, 8.0]);
    assert_eq!(r.phase(), Phase::CongestionAvoidance);
    // Congestion avoidance: 1/cwnd per ack, about one chunk per window.
    for _ in 0..3 {
        let before = r.cwnd;
        r.on_new_ack(before as u64);
        let grew = r.cwnd - before;
        assert!((0.85..=1.0).contains(&grew), "grew {grew} from {before}");
    }
}

#[test]
fn reno_halves_on_three_duplicates_and_resets_on_timeout() {
    let mut r = Reno::default();
    r.cwnd = 12.0;
    r.on_loss();
    assert_eq!(
        (r.ssthresh, r.cwnd, r.phase()),
        (6.0, 9.0, Phase::FastRecovery)
    );
    r.on_extra_dup();
    assert_eq!(r.cwnd, 10.0, "each further duplicate inflates by one");
    r.on_new_ack(5);
    assert_eq!(
        (r.cwnd, r.phase()),
        (6.0, Phase::CongestionAvoidance),
        "deflates to half"
    );
    r.cwnd = 10.0;
    r.on_timeout();
    assert_eq!(
        (r.ssthresh, r.cwnd, r.phase()),
        (5.0, 1.0, Phase::SlowStart)
    );
    // Never below two for the threshold.
    r.on_timeout();
    assert_eq!(r.ssthresh, 2.0);
}

#[test]
fn the_sender_keeps_within_its_window_and_repairs_losses() {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let mut s = RenoSender::new(100);
    assert_eq!(s.poll_transmit(ms(0)), Some(0));
    assert_eq!(s.poll_transmit(ms(0)), None, "window of one");
    s.on_ack(ms(10), 1);
    assert_eq!(s.srtt(), Some(Duration::from_millis(10)));
    let burst: Vec<u64> = std::iter::from_fn(|| s.poll_transmit(ms(10))).collect();
    assert_eq!(burst, [1, 2], "window of two");
    s.on_ack(ms(20), 3);
    let burst: Vec<u64> = std::iter::from_fn(|| s.poll_transmit(ms(20))).collect();
    assert_eq!(burst, [3, 4, 5, 6]);
    // Chunk 3 is lost: 4, 5, 6 each produce a duplicate ack for 3.
    for _ in 0..2 {
        s.on_ack(ms(30), 3);
        assert_eq!(s.poll_transmit(ms(30)), None);
    }
    s.on_ack(ms(30), 3);
    assert_eq!(s.window().phase(), Phase::FastRecovery);
    assert_eq!(s.poll_transmit(ms(30)), Some(3), "fast retransmit first");
    assert_eq!(s.counters().fast_retransmits, 1);
    s.on_ack(ms(40), 7);
    assert_eq!(s.window().phase(), Phase::CongestionAvoidance);
    // Nothing comes back at all: the timer fires, the window is one chunk
    // again and sending resumes at the first unacknowledged chunk.
    let sent: Vec<u64> = std::iter::from_fn(|| s.poll_transmit(ms(40))).collect();
    assert!(!sent.is_empty());
    let rto = s.rto();
    let due = s.poll_timeout().unwrap_or(ms(0));
    assert_eq!(due, ms(40) + rto);
    s.on_timeout(due - Duration::from_millis(1));
    assert_eq!(s.counters().timeouts, 0, "not before it is due");
    s.on_timeout(due);
    assert_eq!(s.counters().timeouts, 1);
    assert_eq!(s.window().cwnd, 1.0);
    assert_eq!(s.rto(), (rto * 2).min(reno::MAX_RTO), "backed off");
    assert_eq!(s.poll_transmit(due), Some(7));
    assert_eq!(s.poll_transmit(due), None);
}

/// A one-way bottleneck: chunks queue (up to `queue` of them) and leave one
/// per `service`; each takes `delay` to the receiver, whose ack takes
/// `delay` back. `blackout` drops everything sent in that span.
struct Link {
    queue: usize,
    service: Duration,
    delay: Duration,
    blackout: Option<(Duration, Duration)>,
}

struct Outcome {
    /// (time since start, cwnd) after every ack.
    trace: Vec<(Duration, f64)>,
    counters: SenderCounters,
    dropped: u64,
    received: Vec<u8>,
    elapsed: Duration,
}

fn run(link: &Link, file: &[u8], chunk: u32) -> Outcome {
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    enum Ev {
        /// A chunk leaves the queue's head.
        Dequeue,
        Arrive(u64),
        Ack(u64),
    }
    let t0 = Instant::now();
    let chunks = (file.len() as u64).div_ceil(u64::from(chunk));
    let sha = hex(&Sha256::digest(file));
    let mut s = RenoSender::new(chunks);
    let mut r = FileReceiver::new(file.len() as u64, chunk, &sha);
    let mut out = Vec::new();
    let mut queue: VecDeque<u64> = VecDeque::new();
    let mut events: BinaryHeap<Reverse<(Instant, u64, Ev)>> = BinaryHeap::new();
    let mut n = 0u64;
    let mut push = |events: &mut BinaryHeap<_>, at, ev| {
        n += 1;
        events.push(Reverse((at, n, ev)));
    };
    let mut now = t0;
    let mut trace = Vec::new();
    let mut dropped = 0;
    let mut busy = false;
    let encode = |seq: u64| {
        let start = (seq * u64::from(chunk)) as usize;
        let end = (start + chunk as usize).min(file.len());
        base64::engine::general_purpose::STANDARD.encode(&file[start..end])
    };
    while !s.is_done() {
        while let Some(seq) = s.poll_transmit(now) {
            let since = now - t0;
            let dark = link
                .blackout
                .is_some_and(|(from, to)| since >= from && since < to);
            if dark || queue.len() >= link.queue {
                dropped += 1;
            } else {
                queue.push_back(seq);
                if !busy {
                    busy = true;
                    push(&mut events, now + link.service, Ev::Dequeue);
                }
            }
        }
        let next_ev = events.peek().map(|Reverse((at, _, _))| *at);
        let timer = s.poll_timeout();
        let event_first = match (next_ev, timer) {
            (Some(e), Some(t)) => e <= t,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => panic!("stalled with nothing in flight"),
        };
        match timer {
            _ if event_first => {
                let Some(Reverse((at, _, ev))) = events.pop() else {
                    break;
                };
                now = at;
                match ev {
                    Ev::Dequeue => {
                        if let Some(seq) = queue.pop_front() {
                            push(&mut events, now + link.delay, Ev::Arrive(seq));
                        }
                        if queue.is_empty() {
                            busy = false;
                        } else {
                            push(&mut events, now + link.service, Ev::Dequeue);
                        }
                    }
                    Ev::Arrive(seq) => {
                        let ack = r
                            .on_chunk(seq, &encode(seq), &mut out)
                            .unwrap_or_else(|e| panic!("{e}"));
                        push(&mut events, now + link.delay, Ev::Ack(ack));
                    }
                    Ev::Ack(next) => {
                        s.on_ack(now, next);
                        trace.push((now - t0, s.window().cwnd));
                    }
                }
            }
            Some(t) => {
                now = t;
                s.on_timeout(now);
                trace.push((now - t0, s.window().cwnd));
            }
            None => unreachable!("no event and no timer was refused above"),
        }
        assert!(
            now - t0 < Duration::from_secs(600),
            "transfer never finished"
        );
    }
    if let Err(e) = r.finish() {
        panic!("{e}");
    }
    Outcome {
        trace,
        counters: s.counters(),
        dropped,
        received: out,
        elapsed: now - t0,
    }
}

fn pseudo_random_file(len: usize) -> Vec<u8> {
    let mut x: u32 = 2463534242;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn through_a_congested_queue_the_window_saws_and_the_file_arrives_intact() {
    // 6 MB in 8 KiB chunks through a queue of 8 chunks draining one chunk
    // per ms, 5 ms each way.
    let file = pseudo_random_file(6_000_000 + 123);
    let link = Link {
        queue: 8,
        service: Duration::from_millis(1),
        delay: Duration::from_millis(5),
        blackout: None,
    };
    let o = run(&link, &file, 8192);
    assert_eq!(o.received, file);
    assert!(o.dropped > 0, "the queue overflowed");
    assert!(o.counters.fast_retransmits > 0, "{:?}", o.counters);
    // Each loss halves the window: find drops of at least 40% between
    // consecutive acks, and growth back in between (the Reno sawtooth).
    let halvings = o
        .trace
        .windows(2)
        .filter(|w| w[1].1 <= w[0].1 * 0.6 + 3.0 && w[0].1 >= 8.0 && w[1].1 < w[0].1)
        .count();
    assert!(
        halvings >= 2,
        "sawtooth expected, trace {:?}",
        &o.trace[..40.min(o.trace.len())]
    );
    let max = o.trace.iter().map(|t| t.1).fold(0.0, f64::max);
    let chunks = file.len().div_ceil(8192) as f64;
    eprintln!(
        "{chunks} chunks in {:?} (ideal {} ms); window max {max:.1}; {halvings} halvings; {} dropped at the queue; {:?}",
        o.elapsed, chunks, o.dropped, o.counters
    );
    // The path holds ~10 chunks in flight plus 8 queued: the window must
    // stay near that, not run away.
    assert!(max < 40.0, "window {max} is far beyond the path's capacity");
    // Goodput is near the bottleneck's 1 chunk/ms (the sawtooth keeps the
    // queue from emptying for long).
    let ideal = Duration::from_millis(chunks as u64);
    assert!(
        o.elapsed < ideal * 2,
        "{:?} for {chunks} chunks (ideal {ideal:?})",
        o.elapsed
    );
}

#[test]
fn a_blackout_times_out_to_a_window_of_one_and_the_transfer_resumes() {
    let file = pseudo_random_file(500_000);
    let link = Link {
        queue: 64,
        service: Duration::from_micros(500),
        delay: Duration::from_millis(2),
        blackout: Some((Duration::from_millis(20), Duration::from_millis(1500))),
    };
    let o = run(&link, &file, 4096);
    assert_eq!(o.received, file);
    assert!(o.counters.timeouts >= 1, "{:?}", o.counters);
    assert!(
        o.trace
            .iter()
            .any(|(at, cwnd)| *cwnd == 1.0 && *at > Duration::from_millis(20)),
        "window reset to 1 after the timeout"
    );
}

#[test]
fn the_receiver_reorders_acks_gaps_and_rejects_bad_files() {
    let file = pseudo_random_file(10_000);
    let sha = hex(&Sha256::digest(&file));
    let b64 = |seq: usize| {
        let s = seq * 4096;
        base64::engine::general_purpose::STANDARD.encode(&file[s..(s + 4096).min(file.len())])
    };
    let mut r = FileReceiver::new(10_000, 4096, &sha);
    let mut out = Vec::new();
    assert_eq!(
        r.on_chunk(1, &b64(1), &mut out),
        Ok(0),
        "gap: duplicate ack"
    );
    assert_eq!(r.on_chunk(2, &b64(2), &mut out), Ok(0));
    assert!(out.is_empty());
    assert_eq!(r.on_chunk(0, &b64(0), &mut out), Ok(3), "gap filled");
    assert_eq!(r.on_chunk(0, &b64(0), &mut out), Ok(3), "duplicate ignored");
    assert_eq!(out, file);
    assert_eq!(r.duplicates(), 1);
    assert_eq!(r.finish(), Ok(()));
    // Wrong length, bad base64, out of range, wrong hash, missing chunks.
    let mut r = FileReceiver::new(10_000, 4096, &sha);
    assert!(matches!(
        r.on_chunk(0, &b64(2), &mut out),
        Err(ReceiveError::BadChunk { seq: 0, .. })
    ));
    assert!(matches!(
        r.on_chunk(0, "!!!", &mut out),
        Err(ReceiveError::BadChunk { .. })
    ));
    assert!(matches!(
        r.on_chunk(3, &b64(0), &mut out),
        Err(ReceiveError::BadChunk { seq: 3, .. })
    ));
    assert!(matches!(
        r.finish(),
        Err(ReceiveError::Incomplete {
            missing: 3,
            chunks: 3
        })
    ));
    let mut r = FileReceiver::new(10_000, 4096, &"0".repeat(64));
    for i in 0..3 {
        let _ = r.on_chunk(i, &b64(i as usize), &mut out);
    }
    assert!(matches!(r.finish(), Err(ReceiveError::Checksum { .. })));
}
