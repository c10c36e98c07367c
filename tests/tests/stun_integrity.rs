//! Signed STUN over real sockets: a binding captured and resent from
//! another address is refused, and a client whose address changed binds
//! again through the nonce told on its control channel, its media then
//! flowing from the new address.

use std::time::Duration;

use client::{ConnectOptions, FloorAnswer, Session};
use proto::control::FEATURE_STUN_INTEGRITY;
use proto::media::{BindingResponse, binding_request_signed, parse_binding_response};
use switchboard_tests::{drain_media, member, start_router};
use tokio::net::UdpSocket;

async fn ask(
    socket: &UdpSocket,
    to: std::net::SocketAddr,
    bytes: &[u8],
    tid: proto::media::StunTransaction,
) -> Option<BindingResponse> {
    let _ = socket.send_to(bytes, to).await;
    let mut buf = vec![0u8; 1500];
    let got = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf)).await;
    let Ok(Ok((n, _))) = got else { return None };
    parse_binding_response(&buf[..n], tid)
}

#[tokio::test]
async fn a_replayed_binding_is_refused_and_a_moved_client_binds_again_with_the_nonce() {
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let opts = ConnectOptions {
        features: vec![FEATURE_STUN_INTEGRITY.to_owned()],
        ..ConnectOptions::default()
    };
    let mut alice = match Session::connect_with(addr, "alice", opts).await {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let Some(media_id) = alice.welcome().media_id.clone() else {
        panic!("no media_id")
    };
    if let Err(e) = alice.join("lobby").await {
        panic!("{e}");
    }
    let key = alice.welcome().media_token.clone();
    // Alice's own binding, as her client sends it.
    let server = router.media_addr();
    let (Ok(a), Ok(eve)) = (
        UdpSocket::bind("127.0.0.1:0").await,
        UdpSocket::bind("127.0.0.1:0").await,
    ) else {
        panic!("bind")
    };
    let Ok((request, tid)) = binding_request_signed(&media_id, &key, None) else {
        panic!()
    };
    let ok = ask(&a, server, &request, tid).await;
    assert!(matches!(ok, Some(BindingResponse::Success(_))), "{ok:?}");
    // Eve captured it and sends it from her address.
    let replay = ask(&eve, server, &request, tid).await;
    assert!(
        matches!(replay, Some(BindingResponse::Error(400, _))),
        "{replay:?}"
    );
    let stats = router.engine_stats().await;
    assert!(stats.is_some_and(|s| s.stun_replayed == 1), "{stats:?}");

    // Alice's address changes: the library binds a new socket through the
    // nonce of MEDIA_NONCE.
    let moved = match alice.rebind_media().await {
        Ok(m) => m,
        Err(e) => panic!("rebind: {e}"),
    };
    assert_ne!(moved.local_addr().ok(), a.local_addr().ok());
    // Her media flows from there to Bob; Eve's socket hears nothing.
    let (_bob, bob_media) = member(addr, "bob", "lobby").await;
    assert!(matches!(
        alice.request_floor(0).await,
        Ok(FloorAnswer::Granted { .. })
    ));
    let ssrc = alice.welcome().ssrcs.audio;
    for seq in 0..20u16 {
        let pkt = proto::media::build_rtp(111, seq, u32::from(seq) * 960, ssrc, false, &[0u8; 40]);
        let _ = moved.send_raw(&pkt).await;
    }
    let heard = drain_media(&bob_media, Duration::from_millis(500)).await;
    assert!(heard.len() >= 15, "bob heard {} packets", heard.len());
    // Joining again and binding from yet another socket, as the desktop
    // client does for each room: JOINED's nonce lets it move at once.
    let _ = alice.send(proto::control::ClientMessage::Leave).await;
    if let Err(e) = alice.join("lobby").await {
        panic!("{e}");
    }
    let again = alice.bind_media().await;
    assert!(again.is_ok(), "{:?}", again.err());
    router.shutdown().await;
}

/// `secure = true`: TLS only, tokens only, signed bindings only.
#[tokio::test]
async fn a_secure_router_takes_tls_tokens_and_signed_bindings_only() {
    use client::tls::{TlsOptions, Transport, Trust};
    use router::auth::{Claims, Grants, SigningKey};
    let key = SigningKey::generate();
    let public = key.public_key();
    let router = start_router(|c| {
        c.secure = true;
        c.auth.keys = vec![router::config::KeyConfig::new("k1", public)];
    })
    .await;
    let addr = router.control_addr();
    let Some(fp) = router.tls_fingerprint() else {
        panic!("no TLS")
    };
    // Plaintext: refused before anything else.
    let plain = Session::connect(addr, "p").await;
    assert!(
        matches!(
            &plain,
            Err(client::ClientError::Router {
                code: proto::control::ErrorCode::TlsRequired,
                ..
            }) | Err(client::ClientError::Closed)
        ),
        "{:?}",
        plain.err()
    );
    let now = router::driver::unix_ms_now() / 1000;
    let everything = Grants {
        join: vec!["*".into()],
        talk: vec!["*".into()],
        ..Grants::default_none()
    };
    let token = |sub: &str| {
        key.mint("k1", &Claims::new(sub, now + 600, everything.clone()))
            .unwrap_or_default()
    };
    let opts = |sub: &str, features: Vec<String>| ConnectOptions {
        token: Some(token(sub)),
        features,
        tls: TlsOptions {
            transport: Transport::Tls,
            trust: Trust::Fingerprint(fp.clone()),
            server_name: None,
        },
        ..ConnectOptions::default()
    };
    // No token: refused.
    let no_token = Session::connect_with(
        addr,
        "x",
        ConnectOptions {
            token: None,
            ..opts("x", vec![])
        },
    )
    .await;
    assert!(
        matches!(
            &no_token,
            Err(client::ClientError::Router {
                code: proto::control::ErrorCode::TokenRequired,
                ..
            })
        ),
        "{:?}",
        no_token.err()
    );
    // A client that binds by its token in clear is refused at STUN, and
    // it cannot join: every room of a secure router is secure, and takes
    // only sessions with signed bindings and SRTP keys.
    let Ok(mut old) = Session::connect_with(addr, "x", opts("old", vec![])).await else {
        panic!("connect")
    };
    match old.join("lobby").await {
        Err(client::ClientError::Router {
            code: proto::control::ErrorCode::SecureRoom,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let refused = old.bind_media().await;
    assert!(
        matches!(refused, Err(client::ClientError::StunRefused(401, _))),
        "{:?}",
        refused.err()
    );
    drop(old);
    // Everything asked for: in, keyed, and bound.
    let Ok(mut ann) = Session::connect_with(
        addr,
        "x",
        opts(
            "ann",
            vec![
                FEATURE_STUN_INTEGRITY.to_owned(),
                proto::control::FEATURE_SRTP.to_owned(),
            ],
        ),
    )
    .await
    else {
        panic!("connect")
    };
    assert_eq!(ann.welcome().nickname, "ann");
    if let Err(e) = ann.join("lobby").await {
        panic!("{e}");
    }
    assert!(ann.room_secure(), "a secure router's lobby is secure");
    assert!(ann.bind_media().await.is_ok());
    router.shutdown().await;
}
