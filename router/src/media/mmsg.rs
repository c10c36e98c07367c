//! Batched UDP I/O: `recvmmsg` and `sendmmsg` over a std socket.
//!
//! The one place in the router with `unsafe`: the kernel writes into buffers
//! and addresses we own, and reads iovecs that point into them for the length
//! of one call. Everything else sees safe slices and `SocketAddr`s.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

use proto::media::MAX_DATAGRAM;

/// Datagrams moved by one system call at most.
pub const BATCH: usize = 64;

/// Receive buffers for one `recvmmsg` call, reused from call to call.
pub struct RecvBatch {
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    lens: Vec<usize>,
    addrs: Vec<Option<SocketAddr>>,
    names: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Control-message space per datagram, when kernel receive timestamps
    /// were asked for ([`RecvBatch::with_timestamps`]); u64 for alignment.
    controls: Vec<[u64; CONTROL_WORDS]>,
    stamps: Vec<Option<std::time::Duration>>,
    /// Datagrams the kernel cut to the buffer (`MSG_TRUNC`).
    truncated: Vec<bool>,
    len: usize,
}

/// Room for one `SCM_TIMESTAMPNS` control message (a `timespec`), with
/// slack for the header and alignment.
const CONTROL_WORDS: usize = 8;

// The raw pointers inside are only set during a call and point into the
// struct's own vectors; nothing is shared across threads.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new(BATCH)
    }
}

impl RecvBatch {
    pub fn new(n: usize) -> Self {
        Self {
            bufs: vec![[0u8; MAX_DATAGRAM]; n],
            lens: vec![0; n],
            addrs: vec![None; n],
            // SAFETY: all-zero is a valid sockaddr_storage / iovec / mmsghdr.
            names: vec![unsafe { zeroed() }; n],
            iovs: vec![unsafe { zeroed() }; n],
            hdrs: vec![unsafe { zeroed() }; n],
            controls: Vec::new(),
            stamps: vec![None; n],
            truncated: vec![false; n],
            len: 0,
        }
    }

    /// Like [`RecvBatch::new`], and also reads the kernel's receive time of
    /// each datagram (the socket must have [`enable_timestamps`]).
    pub fn with_timestamps(n: usize) -> Self {
        let mut b = Self::new(n);
        b.controls = vec![[0u64; CONTROL_WORDS]; n];
        b
    }

    /// When the kernel received the `i`-th datagram (`CLOCK_REALTIME`, since
    /// the Unix epoch), if timestamps were asked for and given.
    pub fn timestamp(&self, i: usize) -> Option<std::time::Duration> {
        self.stamps.get(i).copied().flatten()
    }

    /// Datagrams received by the last call.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `i`-th datagram and its source (`None` for an address family we
    /// do not speak, which the caller drops).
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        (&self.bufs[i][..self.lens[i]], self.addrs[i])
    }

    /// Whether the `i`-th datagram was longer than [`MAX_DATAGRAM`] and cut
    /// to it by the kernel.
    pub fn is_truncated(&self, i: usize) -> bool {
        self.truncated[i]
    }

    /// The payload of the `i`-th datagram.
    pub fn data(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i]]
    }

    /// Blocks until at least one datagram arrives (or the socket's read
    /// timeout passes), then takes every datagram already queued, up to the
    /// batch size.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let n = self.bufs.len();
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            };
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            match self.controls.get_mut(i) {
                Some(c) => {
                    h.msg_hdr.msg_control = c.as_mut_ptr().cast();
                    h.msg_hdr.msg_controllen = size_of::<[u64; CONTROL_WORDS]>() as _;
                }
                None => {
                    h.msg_hdr.msg_control = std::ptr::null_mut();
                    h.msg_hdr.msg_controllen = 0;
                }
            }
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: hdrs has n initialised entries whose pointers reference
        // buffers owned by self that outlive the call.
        let r = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            self.len = 0;
            return Err(io::Error::last_os_error());
        }
        let got = r as usize;
        for i in 0..got {
            // A datagram larger than MAX_DATAGRAM arrives cut to size, with
            // MSG_TRUNC set: callers drop it (`is_truncated`).
            self.lens[i] = (self.hdrs[i].msg_len as usize).min(MAX_DATAGRAM);
            self.truncated[i] = self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.addrs[i] = from_storage(&self.names[i]);
            if !self.controls.is_empty() {
                self.stamps[i] = timestamp_of(&self.hdrs[i].msg_hdr);
            }
        }
        self.len = got;
        Ok(got)
    }
}

/// Send buffers for `sendmmsg`, reused from call to call.
#[derive(Default)]
pub struct SendBatch {
    names: Vec<libc::sockaddr_storage>,
    namelens: Vec<libc::socklen_t>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// See RecvBatch.
unsafe impl Send for SendBatch {}

impl SendBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends every `(payload, destination)` pair, `BATCH` per system call.
    /// Returns the number of datagrams the kernel accepted; a destination
    /// that fails (e.g. ICMP-unreachable on loopback) is skipped, not retried.
    pub fn send<'a>(
        &mut self,
        socket: &UdpSocket,
        msgs: impl ExactSizeIterator<Item = (&'a [u8], SocketAddr)>,
    ) -> usize {
        let total = msgs.len();
        self.names.clear();
        self.namelens.clear();
        self.iovs.clear();
        self.hdrs.clear();
        for (data, to) in msgs {
            let (name, len) = to_storage(to);
            self.names.push(name);
            self.namelens.push(len);
            self.iovs.push(libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            });
        }
        for i in 0..total {
            // SAFETY: all-zero is a valid mmsghdr.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = self.namelens[i];
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            self.hdrs.push(h);
        }
        let mut sent = 0;
        let mut at = 0;
        while at < total {
            let n = (total - at).min(BATCH);
            // SAFETY: hdrs[at..at+n] point into names/iovs, which point into
            // the callers' payloads; all live for the duration of the call.
            let r = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.hdrs.as_mut_ptr().add(at),
                    n as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The first message of this chunk failed: skip it.
                at += 1;
                continue;
            }
            // After a short count the next call reports the failing message,
            // which the branch above then skips.
            sent += r as usize;
            at += (r as usize).max(1);
        }
        sent
    }
}

fn to_storage(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage, and sockaddr_in /
    // sockaddr_in6 fit inside it by definition.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            unsafe {
                std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin);
            }
            (storage, size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            unsafe {
                std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6);
            }
            (storage, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

/// Asks the kernel to stamp every datagram `socket` receives
/// (`SO_TIMESTAMPNS`), for [`RecvBatch::with_timestamps`].
pub fn enable_timestamps(socket: &UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid fd and a c_int option value of the size given.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The `SCM_TIMESTAMPNS` of a received message, if present.
fn timestamp_of(msg: &libc::msghdr) -> Option<std::time::Duration> {
    // SAFETY: msg was filled by recvmmsg; CMSG_* walk its control buffer
    // within msg_controllen, and the timespec is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(std::time::Duration::new(
                    ts.tv_sec as u64,
                    ts.tv_nsec as u32,
                ));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for AF_INET.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((s as *const libc::sockaddr_storage).cast()) };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((s as *const libc::sockaddr_storage).cast()) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A UDP socket tuned for media: large kernel buffers and a read timeout so
/// the worker can notice shutdown.
pub fn media_socket(addr: SocketAddr, read_timeout: std::time::Duration) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(read_timeout))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn kernel_timestamps_are_read() {
        let Ok(a) = media_socket(([127, 0, 0, 1], 0).into(), Duration::from_millis(500)) else {
            panic!("socket")
        };
        let Ok(b) = media_socket(([127, 0, 0, 1], 0).into(), Duration::from_millis(500)) else {
            panic!("socket")
        };
        assert!(enable_timestamps(&b).is_ok());
        let Ok(to) = b.local_addr() else { panic!() };
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let _ = a.send_to(b"x", to);
        let mut batch = RecvBatch::with_timestamps(4);
        assert_eq!(batch.recv(&b).ok(), Some(1));
        let Some(t) = batch.timestamp(0) else {
            panic!("no timestamp")
        };
        assert!(
            t >= before && t < before + Duration::from_secs(1),
            "{t:?} {before:?}"
        );
        // Without asking, none.
        let _ = a.send_to(b"y", to);
        let mut plain = RecvBatch::new(4);
        assert_eq!(plain.recv(&b).ok(), Some(1));
        assert_eq!(plain.timestamp(0), None);
    }

    #[test]
    fn batch_roundtrip_v4_and_v6() {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(bind) = bind.parse::<SocketAddr>() else {
                continue;
            };
            let Ok(a) = media_socket(bind, Duration::from_millis(500)) else {
                continue; // no IPv6 on this host
            };
            let Ok(b) = media_socket(bind, Duration::from_millis(500)) else {
                continue;
            };
            let (Ok(aa), Ok(ba)) = (a.local_addr(), b.local_addr()) else {
                panic!()
            };
            let payloads: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 10 + i as usize]).collect();
            let mut sb = SendBatch::new();
            let sent = sb.send(&a, payloads.iter().map(|p| (p.as_slice(), ba)));
            assert_eq!(sent, 100);
            let mut rb = RecvBatch::new(BATCH);
            let mut got = Vec::new();
            while got.len() < 100 {
                match rb.recv(&b) {
                    Ok(n) => {
                        for i in 0..n {
                            let (d, from) = rb.get(i);
                            assert_eq!(from, Some(aa));
                            got.push(d.to_vec());
                        }
                    }
                    Err(e) => panic!("recv: {e}"),
                }
            }
            assert_eq!(got, payloads);
        }
    }

    #[test]
    fn unreachable_destination_does_not_stop_the_batch() {
        let Ok(a) = media_socket(([127, 0, 0, 1], 0).into(), Duration::from_millis(500)) else {
            panic!()
        };
        let Ok(b) = media_socket(([127, 0, 0, 1], 0).into(), Duration::from_millis(500)) else {
            panic!()
        };
        let Ok(ba) = b.local_addr() else { panic!() };
        // A port with nobody listening; loopback answers ICMP unreachable,
        // which surfaces as ECONNREFUSED on a later send.
        let dead: SocketAddr = ([127, 0, 0, 1], 9).into();
        let mut sb = SendBatch::new();
        for _ in 0..3 {
            sb.send(&a, [(&b"x"[..], dead), (&b"y"[..], ba)].into_iter());
        }
        let mut rb = RecvBatch::new(8);
        let mut ys = 0;
        while ys < 3 {
            let Ok(n) = rb.recv(&b) else { break };
            ys += (0..n).filter(|i| rb.data(*i) == b"y").count();
        }
        assert_eq!(ys, 3);
    }
}
