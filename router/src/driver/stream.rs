//! The socket a native control connection is served on: the client's TCP
//! connection itself, or, for a TLS client, the router's end of a local
//! socket pair whose other end the TLS task ([`super::tls`]) encrypts onto
//! the client's TCP connection. The outbox and the connection task work on
//! either with the same non-blocking calls (`try_write`, `readable`, ...),
//! so plaintext sessions keep their direct path.

use std::io::{self, IoSlice};

use tokio::net::{TcpStream, UnixStream};

#[derive(Debug)]
pub enum ControlStream {
    Tcp(TcpStream),
    /// The plaintext side of a TLS connection.
    Local(UnixStream),
}

macro_rules! both {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            ControlStream::Tcp($s) => $e,
            ControlStream::Local($s) => $e,
        }
    };
}

impl ControlStream {
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        both!(self, s => s.try_write(buf))
    }

    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        both!(self, s => s.try_write_vectored(bufs))
    }

    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        both!(self, s => s.try_read(buf))
    }

    pub async fn writable(&self) -> io::Result<()> {
        both!(self, s => s.writable().await)
    }

    pub async fn readable(&self) -> io::Result<()> {
        both!(self, s => s.readable().await)
    }

    /// Ends the router's side of the stream (the peer reads its end).
    pub fn shutdown_write(&self) {
        self.shutdown(std::net::Shutdown::Write);
    }

    pub fn shutdown(&self, how: std::net::Shutdown) {
        let _ = both!(self, s => socket2::SockRef::from(s).shutdown(how));
    }

    /// Bytes written that the peer has not yet acknowledged (TCP), or not
    /// yet read (the local pair: the TLS task reads them).
    pub fn unacknowledged(&self) -> Option<usize> {
        both!(self, s => unacknowledged(s))
    }
}

/// Bytes written to a stream socket (and its FIN) that the peer has not
/// yet acknowledged: Linux's `SIOCOUTQ`.
pub fn unacknowledged(socket: &impl std::os::fd::AsRawFd) -> Option<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) on a TCP or Unix stream socket writes one
    // int through the pointer, which points at `n`; the descriptor is open
    // while `socket` is borrowed.
    let r = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    (r == 0).then(|| usize::try_from(n).unwrap_or(0))
}
