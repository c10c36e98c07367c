//! The gRPC admin API with a tonic client: rooms created at run time, errors
//! mapped to the right codes, bearer-token auth, health.

use proto_grpc::admin::admin_client::AdminClient;
use proto_grpc::admin::{CreateRoomRequest, GetRoomRequest, ListPluginsRequest, ListRoomsRequest};
use switchboard_tests::{admin, member, start_router};
use tonic::Code;
use tonic::transport::Channel;

fn create(name: &str, kind: &str, options: &[(&str, &str)]) -> CreateRoomRequest {
    CreateRoomRequest {
        name: name.into(),
        kind: kind.into(),
        max_participants: 0,
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[tokio::test]
async fn rooms_are_created_listed_and_joined_over_grpc() {
    let router = start_router(|_| {}).await;
    let mut a = admin(&router).await;
    let plugins = match a.list_plugins(ListPluginsRequest {}).await {
        Ok(r) => r.into_inner().plugins,
        Err(e) => panic!("{e}"),
    };
    let ptt = plugins.iter().find(|p| p.kind == "ptt");
    let Some(ptt) = ptt else {
        panic!("no ptt in {plugins:?}")
    };
    assert!(
        ptt.options.iter().any(|o| o.name == "burst_limit_secs"
            && o.r#type == "integer"
            && o.default_value == "60")
    );

    let room = a
        .create_room(create(
            "ops",
            "ptt",
            &[("burst_limit_secs", "30"), ("queue", "false")],
        ))
        .await;
    let room = match room {
        Ok(r) => r.into_inner(),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        (room.name.as_str(), room.kind.as_str(), room.participants),
        ("ops", "ptt", 0)
    );

    // Clients can use it at once, with its options in force.
    let (mut x, _) = member(router.control_addr(), "x", "ops").await;
    let (mut y, _) = member(router.control_addr(), "y", "ops").await;
    let granted = x.request_floor(0).await;
    assert!(
        matches!(granted, Ok(client::FloorAnswer::Granted { burst_limit: Some(d) }) if d.as_secs() == 30),
        "{granted:?}"
    );
    let denied = y.request_floor(0).await;
    assert!(
        matches!(
            denied,
            Ok(client::FloorAnswer::Denied {
                reason: proto::control::DenyReason::FloorBusy,
                ..
            })
        ),
        "{denied:?}"
    );

    let rooms = match a.list_rooms(ListRoomsRequest {}).await {
        Ok(r) => r.into_inner().rooms,
        Err(e) => panic!("{e}"),
    };
    let names: Vec<_> = rooms
        .iter()
        .map(|r| (r.name.as_str(), r.participants))
        .collect();
    assert_eq!(names, [("lobby", 0), ("ops", 2)]);
    let got = a.get_room(GetRoomRequest { name: "ops".into() }).await;
    assert!(got.is_ok_and(|r| r.into_inner().participants == 2));
    router.shutdown().await;
}

#[tokio::test]
async fn errors_map_to_grpc_codes_naming_the_field() {
    let router = start_router(|_| {}).await;
    let mut a = admin(&router).await;
    let code = |r: Result<tonic::Response<proto_grpc::admin::Room>, tonic::Status>| match r {
        Ok(_) => (Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_owned()),
    };
    let (c, m) = code(
        a.get_room(GetRoomRequest {
            name: "atlantis".into(),
        })
        .await,
    );
    assert_eq!(c, Code::NotFound, "{m}");
    let (c, m) = code(a.create_room(create("x", "karaoke", &[])).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.starts_with("kind:") && m.contains("ptt"), "{m}");
    let (c, m) = code(a.create_room(create("bad name!", "ptt", &[])).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.starts_with("name:"), "{m}");
    let (c, m) = code(a.create_room(create("", "ptt", &[])).await);
    assert_eq!(
        (c, m.starts_with("name:")),
        (Code::InvalidArgument, true),
        "{m}"
    );
    let (c, m) = code(
        a.create_room(create("y", "ptt", &[("queue", "maybe")]))
            .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.starts_with("options.queue:"), "{m}");
    let (c, m) = code(a.create_room(create("z", "ptt", &[("volume", "11")])).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.starts_with("options.volume:"), "{m}");
    let (c, _) = code(a.create_room(create("lobby", "ptt", &[])).await);
    assert_eq!(c, Code::AlreadyExists);
    // A megabyte of room name is not echoed back whole.
    let huge = "n".repeat(1 << 20);
    let (c, m) = code(a.create_room(create(&huge, "ptt", &[])).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.len() < 400, "{} bytes echoed", m.len());
    let (c, m) = code(a.get_room(GetRoomRequest { name: huge }).await);
    assert_eq!(c, Code::NotFound);
    assert!(m.len() < 400, "{} bytes echoed", m.len());
    router.shutdown().await;
}

#[tokio::test]
async fn a_token_guards_every_service() {
    let router = start_router(|c| c.admin_token = Some("s3cret".into())).await;
    let url = format!("http://{}", router.admin_addr());
    let Ok(channel) = Channel::from_shared(url).map(|e| e.connect_lazy()) else {
        panic!()
    };
    let with = |token: Option<&'static str>| {
        AdminClient::with_interceptor(channel.clone(), move |mut req: tonic::Request<()>| {
            if let Some(t) = token
                && let Ok(v) = t.parse()
            {
                req.metadata_mut().insert("authorization", v);
            }
            Ok(req)
        })
    };
    let none = with(None).list_rooms(ListRoomsRequest {}).await;
    assert_eq!(none.err().map(|s| s.code()), Some(Code::Unauthenticated));
    let wrong = with(Some("Bearer guess"))
        .list_rooms(ListRoomsRequest {})
        .await;
    assert_eq!(wrong.err().map(|s| s.code()), Some(Code::Unauthenticated));
    let right = with(Some("Bearer s3cret"))
        .list_rooms(ListRoomsRequest {})
        .await;
    assert!(right.is_ok(), "{right:?}");
    // Health is guarded too, and reports SERVING with the token.
    let mut health = tonic_health::pb::health_client::HealthClient::with_interceptor(
        channel.clone(),
        |mut req: tonic::Request<()>| {
            if let Ok(v) = "Bearer s3cret".parse() {
                req.metadata_mut().insert("authorization", v);
            }
            Ok(req)
        },
    );
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "switchboard.v1.Admin".into(),
        })
        .await;
    assert!(status.is_ok_and(|s| s.into_inner().status == 1), "SERVING");
    router.shutdown().await;
}

#[tokio::test]
async fn an_access_token_with_the_admin_grant_opens_the_admin_api_beside_the_static_token() {
    use router::auth::{Claims, Grants, SigningKey};
    let key = SigningKey::generate();
    let public = key.public_key();
    let router = start_router(move |c| {
        c.admin_token = Some("s3cret".into());
        c.auth.mode = router::config::AuthMode::Token;
        c.auth.keys = vec![router::config::KeyConfig::new("k1", public)];
    })
    .await;
    let url = format!("http://{}", router.admin_addr());
    let Ok(channel) = Channel::from_shared(url).map(|e| e.connect_lazy()) else {
        panic!()
    };
    let now = router::driver::unix_ms_now() / 1000;
    let token = |admin: bool, exp: u64| {
        let c = Claims::new(
            "ops",
            exp,
            Grants {
                admin,
                ..Grants::default_none()
            },
        );
        key.mint("k1", &c).unwrap_or_default()
    };
    let call = |bearer: String| {
        let mut client =
            AdminClient::with_interceptor(channel.clone(), move |mut req: tonic::Request<()>| {
                if let Ok(v) = format!("Bearer {bearer}").parse() {
                    req.metadata_mut().insert("authorization", v);
                }
                Ok(req)
            });
        async move { client.list_rooms(ListRoomsRequest {}).await.map(|_| ()) }
    };
    assert!(call(token(true, now + 600)).await.is_ok(), "admin grant");
    assert!(
        call("s3cret".into()).await.is_ok(),
        "the static token still works"
    );
    let no_grant = call(token(false, now + 600)).await;
    assert_eq!(
        no_grant.as_ref().err().map(|s| s.code()),
        Some(Code::PermissionDenied),
        "{no_grant:?}"
    );
    let expired = call(token(true, now - 3600)).await;
    assert!(
        expired
            .as_ref()
            .err()
            .is_some_and(|s| s.code() == Code::Unauthenticated && s.message().contains("expired")),
        "{expired:?}"
    );
    let forged = SigningKey::generate().mint(
        "k1",
        &Claims::new(
            "eve",
            now + 600,
            Grants {
                admin: true,
                ..Grants::default_none()
            },
        ),
    );
    let forged = call(forged.unwrap_or_default()).await;
    assert_eq!(forged.err().map(|s| s.code()), Some(Code::Unauthenticated));
    router.shutdown().await;
}

#[tokio::test]
async fn exposing_the_admin_api_without_a_token_is_refused_at_start() {
    let mut config = router::Config {
        control: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        media: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        admin: "0.0.0.0:0".parse().unwrap_or_else(|_| unreachable!()),
        ..router::Config::default()
    };
    let err = router::Router::start(config.clone())
        .await
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|m| m.contains("without a token")),
        "{err:?}"
    );
    // Beyond loopback a token must be strong: " " and "a" are refused.
    for weak in [" ", "a", "aaaaaaaaaaaaaaaaaaaa", "0123456789abcde"] {
        config.admin_token = Some(weak.into());
        let err = router::Router::start(config.clone())
            .await
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|m| m.contains("weak token")),
            "{weak:?}: {err:?}"
        );
    }
    // On loopback any token will do.
    config.admin_token = Some("t".into());
    config.admin = "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!());
    let ok = router::Router::start(config).await;
    assert!(ok.is_ok());
    if let Ok(r) = ok {
        r.shutdown().await;
    }
}

/// Admin calls are not held back by Nagle's algorithm: the listener sets
/// TCP_NODELAY on every connection. Without it, a response written while a
/// `WatchRoom` stream on the same connection has data in flight waits for the
/// client's delayed ACK, about 40 ms on Linux, so the median of 30 calls sits
/// near 40 ms; with it, about a millisecond.
#[tokio::test]
async fn admin_calls_do_not_wait_for_delayed_acks() {
    let router = start_router(|_| {}).await;
    let mut a = admin(&router).await;
    // A watcher on the same connection: the router streams each chat to it
    // while answering the next call, the pattern Nagle delays.
    let mut watch = match a
        .watch_room(proto_grpc::admin::WatchRoomRequest {
            room: "lobby".into(),
        })
        .await
    {
        Ok(w) => w.into_inner(),
        Err(e) => panic!("{e}"),
    };
    let reader = tokio::spawn(async move { while let Ok(Some(_)) = watch.message().await {} });
    let mut took = Vec::new();
    for _ in 0..30 {
        let t = std::time::Instant::now();
        let r = a
            .send_chat(proto_grpc::admin::SendChatRequest {
                room: "lobby".into(),
                to: None,
                text: "x".repeat(4000),
            })
            .await;
        assert!(r.is_ok());
        took.push(t.elapsed());
    }
    took.sort();
    let median = took[took.len() / 2];
    println!("median SendChat (4000 characters) round trip: {median:?}");
    assert!(
        median < std::time::Duration::from_millis(20),
        "median {median:?}: responses are being delayed (TCP_NODELAY?)"
    );
    reader.abort();
    router.shutdown().await;
}
