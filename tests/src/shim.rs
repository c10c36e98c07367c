//! A lossy UDP shim between one client and the router: it drops a seeded
//! random share of the client's RTP on the way in (STUN and RTCP pass), can
//! hold back every nth packet (late arrivals, jitter), and can drop a share
//! of the router's RTP on the way out, switched on and off while running.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::media::{PacketKind, classify};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

pub struct LossyShim {
    /// Where the client sends its media instead of the router.
    pub addr: SocketAddr,
    pub dropped: Arc<AtomicU64>,
    pub passed: Arc<AtomicU64>,
    /// Loss on RTP from the router to the client, in parts per million;
    /// changed with [`LossyShim::set_loss_to_client`] while running.
    to_client_ppm: Arc<AtomicU64>,
    /// RTP towards the client dropped so far.
    pub dropped_to_client: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for LossyShim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LossyShim {
    /// Drops this share of the router's RTP to the client from now on
    /// (0 stops it). RTCP and STUN always pass.
    pub fn set_loss_to_client(&self, loss: f64) {
        let ppm = (loss.clamp(0.0, 1.0) * 1e6) as u64;
        self.to_client_ppm.store(ppm, Ordering::Relaxed);
    }

    /// The share of RTP packets dropped so far.
    pub fn loss(&self) -> f64 {
        let d = self.dropped.load(Ordering::Relaxed) as f64;
        let p = self.passed.load(Ordering::Relaxed) as f64;
        if d + p == 0.0 { 0.0 } else { d / (d + p) }
    }

    pub async fn start(router: SocketAddr, loss: f64, seed: u64) -> std::io::Result<LossyShim> {
        Self::start_with(router, loss, seed, None).await
    }

    /// Like [`LossyShim::start`], and with `late = Some((n, by))` every
    /// `n`th RTP packet that passes is held back `by` before it goes on.
    pub async fn start_with(
        router: SocketAddr,
        loss: f64,
        seed: u64,
        late: Option<(u64, std::time::Duration)>,
    ) -> std::io::Result<LossyShim> {
        let front = UdpSocket::bind("127.0.0.1:0").await?;
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = front.local_addr()?;
        let dropped = Arc::new(AtomicU64::new(0));
        let passed = Arc::new(AtomicU64::new(0));
        let (d, p) = (dropped.clone(), passed.clone());
        let to_client_ppm = Arc::new(AtomicU64::new(0));
        let dropped_to_client = Arc::new(AtomicU64::new(0));
        let (ppm, dtc) = (to_client_ppm.clone(), dropped_to_client.clone());
        let task = tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut rng_back = StdRng::seed_from_u64(seed ^ 0x5eed);
            let mut client: Option<SocketAddr> = None;
            let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
            loop {
                tokio::select! {
                    r = front.recv_from(&mut a) => {
                        let Ok((n, from)) = r else { continue };
                        client = Some(from);
                        if classify(&a[..n]) == PacketKind::Rtp {
                            if rng.random::<f64>() < loss {
                                d.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            let passed = p.fetch_add(1, Ordering::Relaxed) + 1;
                            if let Some((every, by)) = late
                                && passed % every == 0
                            {
                                let (back, data) = (back.clone(), a[..n].to_vec());
                                tokio::spawn(async move {
                                    tokio::time::sleep(by).await;
                                    let _ = back.send_to(&data, router).await;
                                });
                                continue;
                            }
                        }
                        let _ = back.send_to(&a[..n], router).await;
                    }
                    r = back.recv_from(&mut b) => {
                        let Ok((n, _)) = r else { continue };
                        let loss = ppm.load(Ordering::Relaxed) as f64 / 1e6;
                        if loss > 0.0
                            && classify(&b[..n]) == PacketKind::Rtp
                            && rng_back.random::<f64>() < loss
                        {
                            dtc.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        if let Some(c) = client {
                            let _ = front.send_to(&b[..n], c).await;
                        }
                    }
                }
            }
        });
        Ok(LossyShim {
            addr,
            dropped,
            passed,
            to_client_ppm,
            dropped_to_client,
            task,
        })
    }
}

/// A stand-in for a router room where everyone hears everyone (what an open
/// voice room does), for testing clients alone: it answers every STUN
/// Binding Request and forwards each RTP or RTCP datagram to every other
/// peer that has bound.
pub struct MiniRelay {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for MiniRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MiniRelay {
    pub async fn start() -> std::io::Result<MiniRelay> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let task = tokio::spawn(async move {
            let mut peers: Vec<SocketAddr> = Vec::new();
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let data = &buf[..n];
                match classify(data) {
                    PacketKind::Stun => {
                        if !peers.contains(&from) {
                            peers.push(from);
                        }
                        if let Some(resp) = proto::media::binding_success(data, from) {
                            let _ = socket.send_to(&resp, from).await;
                        }
                    }
                    PacketKind::Rtp | PacketKind::Rtcp => {
                        for p in peers.iter().filter(|p| **p != from) {
                            let _ = socket.send_to(data, p).await;
                        }
                    }
                    _ => {}
                }
            }
        });
        Ok(MiniRelay { addr, task })
    }
}
