//! A headless Switchboard client.
//!
//! [`Session`] speaks the control channel: HELLO/WELCOME, rooms, the floor,
//! heartbeats in the background, and every server message as a stream of
//! events. [`Media`] is the UDP side: a STUN Binding that tells the router
//! where we are, then RTP in and out with the SSRCs the router assigned.
//! The CLI (`switchboard-client`) and the tests are built on these two.

#[cfg(feature = "av")]
pub mod av;
pub mod file;
pub mod srtp;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use proto::control::RequestId;
use proto::control::{self, ClientMessage, ErrorCode, ServerMessage, Ssrcs};
use proto::framing::{Frame, LineFramer};
use proto::media::{BindingResponse, MAX_DATAGRAM};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What can go wrong for a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the router closed the connection")]
    Closed,
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("router error {code:?}: {message}")]
    Router { code: ErrorCode, message: String },
    #[error("router is full: {0}")]
    Full(String),
    #[error("unexpected answer: {0:?}")]
    Unexpected(Box<ServerMessage>),
    #[error("media: {0}")]
    Media(String),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("STUN error {0}: {1}")]
    StunRefused(u16, String),
    #[error("join request rejected ({reason:?}): {message}")]
    Rejected {
        reason: proto::control::RejectReason,
        message: String,
    },
}

/// What WELCOME told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub session_id: u64,
    pub nickname: String,
    pub udp_port: u16,
    pub media_token: String,
    pub ssrcs: Ssrcs,
    pub heartbeat_interval: Duration,
    pub silence_timeout: Duration,
    /// Give this to [`ConnectOptions::resume`] to continue this session on
    /// a new connection soon after this one drops (`None`: the router
    /// keeps no sessions).
    pub resume_token: Option<String>,
    /// This connection continued an earlier session.
    pub resumed: bool,
    /// With `stun_integrity`: the public STUN USERNAME; bindings are then
    /// signed with the media token, which never leaves this process.
    pub media_id: Option<String>,
}

/// Options for [`Session::connect_with`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Send HEARTBEAT at the interval the router asks for.
    pub heartbeat: bool,
    /// How long to wait for WELCOME and other answers.
    pub timeout: Duration,
    /// Optional protocol features to ask for in HELLO (e.g.
    /// [`proto::control::FEATURE_MEMBER_DELTAS`]).
    pub features: Vec<String>,
    /// The resume token of an earlier session to continue
    /// ([`Welcome::resume_token`]); [`Welcome::resumed`] says whether it was.
    pub resume: Option<String>,
    /// An access token (`switchboard token mint`) for a router that takes
    /// tokens; the nickname then comes from it (docs/security.md).
    pub token: Option<String>,
    /// TLS, and whom to trust ([`tls`]); plaintext by default.
    pub tls: tls::TlsOptions,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            heartbeat: true,
            timeout: Duration::from_secs(5),
            features: Vec::new(),
            resume: None,
            token: None,
            tls: tls::TlsOptions::default(),
        }
    }
}

/// How a floor request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorAnswer {
    Granted {
        burst_limit: Option<Duration>,
    },
    Denied {
        reason: control::DenyReason,
        holder: Option<String>,
        queue_position: Option<u32>,
    },
}

/// A server message with the request id it answers, if any (see
/// docs/protocol.md, "Request ids").
#[derive(Debug, Clone, PartialEq)]
pub struct Tagged {
    pub message: ServerMessage,
    pub id: Option<RequestId>,
}

/// One command for the writer: a message and its optional request id.
#[derive(Debug)]
struct Outgoing {
    message: ClientMessage,
    id: Option<RequestId>,
}

/// Sends control messages from any task while another reads the events
/// ([`Session::control`]). Commands with a request id ([`Control::request`])
/// get their answers tagged with it ([`Session::next_tagged`]).
#[derive(Debug, Clone)]
pub struct Control(mpsc::Sender<Outgoing>);

impl Control {
    /// Sends one message, waiting while the writer's queue is full.
    pub async fn send(&self, message: ClientMessage) -> Result<(), ClientError> {
        self.request_opt(message, None).await
    }

    /// Sends one message with a request id.
    pub async fn request(&self, message: ClientMessage, id: RequestId) -> Result<(), ClientError> {
        self.request_opt(message, Some(id)).await
    }

    async fn request_opt(
        &self,
        message: ClientMessage,
        id: Option<RequestId>,
    ) -> Result<(), ClientError> {
        self.0
            .send(Outgoing { message, id })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Sends one message if the writer's queue has room.
    pub fn try_send(&self, message: ClientMessage) -> Result<(), ClientError> {
        self.0
            .try_send(Outgoing { message, id: None })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    ClientError::Media("the control queue is full".into())
                }
                mpsc::error::TrySendError::Closed(_) => ClientError::Closed,
            })
    }

    /// The connection is gone.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

type BoxRead = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// A control session with the router.
pub struct Session {
    /// Whether the connection is TLS, and why its certificate is trusted.
    trust: tls::TrustInfo,
    welcome: Welcome,
    server: SocketAddr,
    /// The UDP port of the room we are in (JOINED's), when in one.
    room_udp_port: Option<u16>,
    /// The joined room's settings (JOINED), while in it.
    room_settings: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    /// JOINED's nonce for binding from a new socket (`stun_integrity`).
    media_nonce: Option<String>,
    /// The secure room's SRTP keys, kept by the reader as they arrive.
    keyring: srtp::Keyring,
    tx: Control,
    events: mpsc::Receiver<Tagged>,
    timeout: Duration,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Session {
    /// Connects, says HELLO and waits for WELCOME.
    pub async fn connect(server: SocketAddr, nickname: &str) -> Result<Session, ClientError> {
        Self::connect_with(server, nickname, ConnectOptions::default()).await
    }

    pub async fn connect_with(
        server: SocketAddr,
        nickname: &str,
        opts: ConnectOptions,
    ) -> Result<Session, ClientError> {
        let (stream, trust) = tls::connect(server, &opts.tls).await?;
        let (mut reader, mut writer): (BoxRead, BoxWrite) = match stream {
            tls::Connected::Plain(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            tls::Connected::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (Box::new(r), Box::new(w))
            }
        };
        let (tx, mut out_rx) = mpsc::channel::<Outgoing>(256);
        let (ev_tx, events) = mpsc::channel::<Tagged>(4096);
        let keyring = srtp::Keyring::default();
        let ring = keyring.clone();
        let writer_task = tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                let line = control::to_line(&m.message);
                let line = match &m.id {
                    Some(id) => control::append_request_id(&line, id),
                    None => line,
                };
                if writer.write_all(&line).await.is_err() {
                    break;
                }
            }
            let _ = writer.shutdown().await;
        });
        let reader_task = tokio::spawn(async move {
            let mut framer = LineFramer::new(control::MAX_LINE_BYTES);
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                framer.push(&buf[..n]);
                while let Some(f) = framer.next_frame() {
                    let Frame::Line(line) = f else { continue };
                    match serde_json::from_slice::<ServerMessage>(&line) {
                        Ok(message) => {
                            ring.observe(&message);
                            let id = control::request_id_of(&line);
                            if ev_tx.send(Tagged { message, id }).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "unparseable server line"),
                    }
                }
            }
        });
        let mut session = Session {
            trust,
            welcome: Welcome {
                session_id: 0,
                nickname: String::new(),
                udp_port: 0,
                media_token: String::new(),
                ssrcs: Ssrcs { audio: 0, video: 0 },
                heartbeat_interval: Duration::from_secs(5),
                silence_timeout: Duration::from_secs(15),
                resume_token: None,
                resumed: false,
                media_id: None,
            },
            server,
            room_udp_port: None,
            room_settings: None,
            media_nonce: None,
            keyring,
            tx: Control(tx),
            events,
            timeout: opts.timeout,
            tasks: vec![writer_task, reader_task],
        };
        session
            .send(ClientMessage::Hello {
                version: proto::PROTOCOL_VERSION,
                nickname: nickname.to_owned(),
                token: opts.token.clone(),
                features: opts.features.clone(),
                resume: opts.resume.clone(),
            })
            .await?;
        let welcome = session
            .expect("WELCOME", |m| match m {
                ServerMessage::Welcome {
                    session_id,
                    nickname,
                    udp_port,
                    media_token,
                    ssrcs,
                    heartbeat_interval_ms,
                    silence_timeout_ms,
                    resume_token,
                    resumed,
                    media_id,
                    ..
                } => Some(Welcome {
                    media_id: media_id.clone(),
                    session_id: *session_id,
                    nickname: nickname.clone(),
                    udp_port: *udp_port,
                    media_token: media_token.clone(),
                    ssrcs: *ssrcs,
                    heartbeat_interval: Duration::from_millis(*heartbeat_interval_ms),
                    silence_timeout: Duration::from_millis(*silence_timeout_ms),
                    resume_token: resume_token.clone(),
                    resumed: *resumed,
                }),
                _ => None,
            })
            .await?;
        session.welcome = welcome;
        if opts.heartbeat {
            let tx = session.tx.clone();
            let every = session
                .welcome
                .heartbeat_interval
                .max(Duration::from_millis(50));
            session.tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if tx.send(ClientMessage::Heartbeat).await.is_err() {
                        break;
                    }
                }
            }));
        }
        Ok(session)
    }

    /// Whether the control connection is TLS, with the certificate's
    /// fingerprint and why it is trusted.
    pub fn trust(&self) -> &tls::TrustInfo {
        &self.trust
    }

    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The router's media address: the control host, with the UDP port of
    /// the room we are in (the media worker that forwards its packets, told
    /// in JOINED), or WELCOME's port outside rooms. Bind media after
    /// joining, and again after moving to a room with another port.
    pub fn media_server(&self) -> SocketAddr {
        let port = self.room_udp_port.unwrap_or(self.welcome.udp_port);
        SocketAddr::new(self.server.ip(), port)
    }

    /// The audio codec of the room we are in (JOINED `settings.codec`; a
    /// router too old to tell is `opus`), `None` outside rooms.
    pub fn room_codec(&self) -> Option<&str> {
        let settings = self.room_settings.as_ref()?;
        Some(
            settings
                .get("codec")
                .and_then(|c| c.as_str())
                .unwrap_or(proto::codec::DEFAULT),
        )
    }

    /// Notes what a server message says about where media goes.
    fn observe(&mut self, m: &ServerMessage) {
        match m {
            ServerMessage::Joined {
                udp_port,
                settings,
                media_nonce,
                ..
            } => {
                self.room_udp_port = Some(*udp_port);
                self.room_settings = Some(settings.clone());
                self.media_nonce = media_nonce.clone();
            }
            ServerMessage::Left { .. } => {
                self.room_udp_port = None;
                self.room_settings = None;
            }
            _ => {}
        }
    }

    /// The SRTP keys of the secure room we are in (none in a plain room):
    /// give it to the media pipelines ([`av::AvOptions::srtp`]).
    pub fn keyring(&self) -> &srtp::Keyring {
        &self.keyring
    }

    /// Whether the room we are in is secure (its media is SRTP).
    pub fn room_secure(&self) -> bool {
        self.keyring.secure()
    }

    /// A handle that sends control messages from another task while this
    /// one reads events.
    pub fn control(&self) -> Control {
        self.tx.clone()
    }

    /// Sends one control message.
    pub async fn send(&self, msg: ClientMessage) -> Result<(), ClientError> {
        self.tx.send(msg).await
    }

    /// The next message from the router; `None` once the connection closed.
    pub async fn next_event(&mut self) -> Option<ServerMessage> {
        Some(self.next_tagged().await?.message)
    }

    /// The next message from the router with the request id it answers.
    pub async fn next_tagged(&mut self) -> Option<Tagged> {
        let t = self.events.recv().await?;
        self.observe(&t.message);
        Some(t)
    }

    /// Waits for the first message `pick` accepts, skipping others; fails on
    /// ERROR, FULL or a close.
    pub async fn expect<T>(
        &mut self,
        what: &'static str,
        mut pick: impl FnMut(&ServerMessage) -> Option<T>,
    ) -> Result<T, ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let m = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| ClientError::Timeout(what))?
                .ok_or(ClientError::Closed)?
                .message;
            self.observe(&m);
            if let Some(t) = pick(&m) {
                return Ok(t);
            }
            match m {
                ServerMessage::Error { code, message } => {
                    return Err(ClientError::Router { code, message });
                }
                ServerMessage::Full { message, .. } => return Err(ClientError::Full(message)),
                ServerMessage::ServerClose { .. } => return Err(ClientError::Closed),
                _ => {}
            }
        }
    }

    /// Joins a room and waits for JOINED.
    pub async fn join(&mut self, room: &str) -> Result<(), ClientError> {
        self.send(ClientMessage::Join { room: room.into() }).await?;
        self.expect("JOINED", |m| {
            matches!(m, ServerMessage::Joined { .. }).then_some(())
        })
        .await
    }

    /// Creates a room of `kind` with `options` and waits until JOINED.
    pub async fn create_room(
        &mut self,
        room: &str,
        kind: &str,
        options: std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<(), ClientError> {
        self.send(ClientMessage::CreateRoom {
            room: room.into(),
            kind: kind.into(),
            max_participants: 0,
            options,
        })
        .await?;
        self.expect("JOINED", |m| {
            matches!(m, ServerMessage::Joined { .. }).then_some(())
        })
        .await
    }

    /// Asks for the floor and waits for the answer.
    pub async fn request_floor(&mut self, priority: u8) -> Result<FloorAnswer, ClientError> {
        self.send(ClientMessage::MicRequest { priority }).await?;
        let me = self.welcome.session_id;
        self.expect("MIC_GRANTED or MIC_DENIED", |m| match m {
            ServerMessage::MicGranted {
                session_id,
                burst_limit_ms,
                ..
            } if *session_id == me => Some(FloorAnswer::Granted {
                burst_limit: (*burst_limit_ms > 0).then(|| Duration::from_millis(*burst_limit_ms)),
            }),
            ServerMessage::MicDenied {
                reason,
                holder,
                queue_position,
                ..
            } => Some(FloorAnswer::Denied {
                reason: *reason,
                holder: holder.clone(),
                queue_position: *queue_position,
            }),
            _ => None,
        })
        .await
    }

    /// Waits until the floor is granted to us (after being queued).
    pub async fn wait_for_grant(&mut self, within: Duration) -> Result<(), ClientError> {
        let me = self.welcome.session_id;
        let saved = self.timeout;
        self.timeout = within;
        let r = self
            .expect("MIC_GRANTED", |m| {
                matches!(m, ServerMessage::MicGranted { session_id, .. } if *session_id == me)
                    .then_some(())
            })
            .await;
        self.timeout = saved;
        r
    }

    /// Starts a meeting (this session is its host); returns (room, code)
    /// once JOINED.
    pub async fn create_meeting(
        &mut self,
        end_with_host: bool,
    ) -> Result<(String, String), ClientError> {
        self.create_meeting_with(end_with_host, None).await
    }

    /// [`Session::create_meeting`] in audio codec `codec` (`l16-16k` for a
    /// meeting seed-002 clients join).
    pub async fn create_meeting_with(
        &mut self,
        end_with_host: bool,
        codec: Option<&str>,
    ) -> Result<(String, String), ClientError> {
        self.send(ClientMessage::CreateMeeting {
            end_with_host,
            codec: codec.map(str::to_owned),
        })
        .await?;
        let (room, code) = self
            .expect("MEETING_CREATED", |m| match m {
                ServerMessage::MeetingCreated { room, code, .. } => {
                    Some((room.clone(), code.clone()))
                }
                _ => None,
            })
            .await?;
        self.expect("JOINED", |m| {
            matches!(m, ServerMessage::Joined { .. }).then_some(())
        })
        .await?;
        Ok((room, code))
    }

    /// Asks to join the meeting with `code` and waits up to `within` for the
    /// host: the room's name once JOINED, or [`ClientError::Rejected`].
    pub async fn request_join(
        &mut self,
        code: &str,
        within: Duration,
    ) -> Result<String, ClientError> {
        self.send(ClientMessage::RequestJoin { code: code.into() })
            .await?;
        let saved = self.timeout;
        self.timeout = within;
        let r = self
            .expect("JOINED or JOIN_REJECTED", |m| match m {
                ServerMessage::Joined { room, .. } => Some(Ok(room.clone())),
                ServerMessage::JoinRejected {
                    reason, message, ..
                } => Some(Err(ClientError::Rejected {
                    reason: *reason,
                    message: message.clone(),
                })),
                _ => None,
            })
            .await;
        self.timeout = saved;
        r?
    }

    /// Sends a chat message to the room, or privately to one nickname.
    pub async fn chat(&self, text: &str, to: Option<&str>) -> Result<(), ClientError> {
        self.send(ClientMessage::Chat {
            text: text.into(),
            to: to.map(str::to_owned),
        })
        .await
    }

    /// Gives up the floor.
    pub async fn release_floor(&self) -> Result<(), ClientError> {
        self.send(ClientMessage::MicRelease).await
    }

    /// Opens a UDP socket and binds it at the router with STUN.
    pub async fn bind_media(&self) -> Result<Media, ClientError> {
        self.bind_media_from(self.media_server(), 0).await
    }

    /// Like [`Session::bind_media`], but sends media to `server` (the
    /// router, or a relay or test shim in between) from a chosen local UDP
    /// port (0: any), e.g. to hand the port to another program afterwards
    /// (see `switchboard-client hold`).
    pub async fn bind_media_from(
        &self,
        server: SocketAddr,
        local_port: u16,
    ) -> Result<Media, ClientError> {
        let media = Media::socket_at(server, local_port, self.welcome.ssrcs).await?;
        match &self.welcome.media_id {
            Some(id) => {
                let nonce = self.media_nonce.as_deref();
                media
                    .stun_bind_signed(id, &self.welcome.media_token, nonce)
                    .await
            }
            None => media.stun_bind(&self.welcome.media_token).await,
        }
    }

    /// Binds a new UDP socket after the session's media was bound from
    /// another address (a network change): with `stun_integrity` the router
    /// answers the first request Stale Nonce and tells a nonce on the
    /// control channel (`MEDIA_NONCE`), which the next request carries.
    pub async fn rebind_media(&mut self) -> Result<Media, ClientError> {
        let server = self.media_server();
        let Some(id) = self.welcome.media_id.clone() else {
            return self.bind_media().await;
        };
        let key = self.welcome.media_token.clone();
        let media = Media::socket_at(server, 0, self.welcome.ssrcs).await?;
        match media.clone().stun_bind_signed(&id, &key, None).await {
            Err(ClientError::StunRefused(438, _)) => {}
            other => return other,
        }
        let nonce = self
            .expect("MEDIA_NONCE", |m| match m {
                ServerMessage::MediaNonce { nonce } => Some(nonce.clone()),
                _ => None,
            })
            .await?;
        media.stun_bind_signed(&id, &key, Some(&nonce)).await
    }
}

/// The UDP half of a session.
#[derive(Debug, Clone)]
pub struct Media {
    socket: Arc<UdpSocket>,
    server: SocketAddr,
    ssrcs: Ssrcs,
    mapped: Option<SocketAddr>,
}

impl Media {
    /// Opens a UDP socket on `local_port` (0: any) and binds it at `server`
    /// with STUN using `token`; `ssrcs` are the ones WELCOME assigned.
    pub async fn open(
        server: SocketAddr,
        local_port: u16,
        ssrcs: Ssrcs,
        token: &str,
    ) -> Result<Media, ClientError> {
        Self::socket_at(server, local_port, ssrcs)
            .await?
            .stun_bind(token)
            .await
    }

    /// A UDP socket on `local_port` (0: any) for media to `server`, not
    /// bound at the router yet.
    async fn socket_at(
        server: SocketAddr,
        local_port: u16,
        ssrcs: Ssrcs,
    ) -> Result<Media, ClientError> {
        let local: SocketAddr = if server.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, local_port).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, local_port).into()
        };
        let socket = UdpSocket::bind(local).await?;
        Ok(Media {
            socket: Arc::new(socket),
            server,
            ssrcs,
            mapped: None,
        })
    }

    /// Sends STUN Binding Requests with `token` (retransmitting as RFC 5389
    /// suggests, from 100 ms doubling) until the router answers.
    pub async fn stun_bind(self, token: &str) -> Result<Media, ClientError> {
        self.stun_bind_with(|| proto::media::binding_request(token))
            .await
    }

    /// As [`Media::stun_bind`] with `stun_integrity`: USERNAME `media_id`,
    /// MESSAGE-INTEGRITY keyed by the media token, and the nonce of
    /// `MEDIA_NONCE` when the session's media moves.
    pub async fn stun_bind_signed(
        self,
        media_id: &str,
        key: &str,
        nonce: Option<&str>,
    ) -> Result<Media, ClientError> {
        self.stun_bind_with(|| proto::media::binding_request_signed(media_id, key, nonce))
            .await
    }

    async fn stun_bind_with(
        mut self,
        request: impl Fn() -> Result<(Vec<u8>, proto::media::StunTransaction), String>,
    ) -> Result<Media, ClientError> {
        let mut wait = Duration::from_millis(100);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        for _ in 0..7 {
            let (req, tid) = request().map_err(ClientError::Media)?;
            self.socket.send_to(&req, self.server).await?;
            let deadline = tokio::time::Instant::now() + wait;
            while let Ok(r) =
                tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf)).await
            {
                let (n, _) = r?;
                match proto::media::parse_binding_response(&buf[..n], tid) {
                    Some(BindingResponse::Success(addr)) => {
                        self.mapped = Some(addr);
                        return Ok(self);
                    }
                    Some(BindingResponse::Error(code, reason)) => {
                        return Err(ClientError::StunRefused(code, reason));
                    }
                    None => {}
                }
            }
            wait = (wait * 2).min(Duration::from_millis(1600));
        }
        Err(ClientError::Timeout("STUN binding response"))
    }

    /// The socket, for a caller that drives it without tokio (the load
    /// generator); fails while clones of this `Media` are alive.
    pub fn into_std(self) -> std::io::Result<std::net::UdpSocket> {
        match Arc::try_unwrap(self.socket) {
            Ok(s) => s.into_std(),
            Err(_) => Err(std::io::Error::other("the media socket is shared")),
        }
    }

    /// Our address as the router sees it.
    pub fn mapped_addr(&self) -> Option<SocketAddr> {
        self.mapped
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn ssrcs(&self) -> Ssrcs {
        self.ssrcs
    }

    pub fn socket(&self) -> &Arc<UdpSocket> {
        &self.socket
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Sends one datagram to the router as is.
    pub async fn send_raw(&self, data: &[u8]) -> Result<(), ClientError> {
        self.socket.send_to(data, self.server).await?;
        Ok(())
    }

    /// Sends an RTP packet with our audio SSRC.
    pub async fn send_rtp(
        &self,
        pt: u8,
        seq: u16,
        ts: u32,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let p = proto::media::build_rtp(pt, seq, ts, self.ssrcs.audio, false, payload);
        self.send_raw(&p).await
    }

    /// The next datagram from the router, or `None` after `within`.
    pub async fn recv(&self, within: Duration) -> Result<Option<Vec<u8>>, ClientError> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        match tokio::time::timeout(within, self.socket.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) if from == self.server => {
                buf.truncate(n);
                Ok(Some(buf))
            }
            Ok(Ok(_)) => Ok(None), // not from the router: ignore
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Ok(None),
        }
    }
}

/// A synthetic talker: RTP at a steady packet rate with a sequence number
/// and the send time (µs since `epoch`) in the first bytes of the payload, so
/// receivers can count loss and measure latency.
pub struct SyntheticTalker {
    pub pt: u8,
    pub rate: u32,
    pub payload_size: usize,
    seq: u16,
    ts: u32,
}

impl SyntheticTalker {
    pub fn new(rate: u32, payload_size: usize) -> Self {
        Self {
            pt: 96,
            rate: rate.max(1),
            payload_size: payload_size.max(16),
            seq: 0,
            ts: 0,
        }
    }

    /// The next packet for `ssrc`, stamped with `sent_us`.
    pub fn next_packet(&mut self, ssrc: u32, sent_us: u64) -> Vec<u8> {
        let mut payload = vec![0u8; self.payload_size];
        payload[..8].copy_from_slice(&sent_us.to_be_bytes());
        payload[8..16].copy_from_slice(&u64::from(self.seq).to_be_bytes());
        let p = proto::media::build_rtp(self.pt, self.seq, self.ts, ssrc, false, &payload);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(48_000 / self.rate);
        p
    }

    /// Sends for `duration` at the configured rate; returns packets sent.
    pub async fn run(&mut self, media: &Media, duration: Duration) -> Result<u64, ClientError> {
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1) / self.rate);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut sent = 0;
        while start.elapsed() < duration {
            tick.tick().await;
            let p = self.next_packet(media.ssrcs.audio, start.elapsed().as_micros() as u64);
            media.send_raw(&p).await?;
            sent += 1;
        }
        Ok(sent)
    }
}
