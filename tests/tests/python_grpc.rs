//! The admin API from a client this project did not write: Python grpcio with
//! grpcio-reflection, installed by `scripts/test` into `target/py`.

use std::path::PathBuf;
use std::time::Duration;

use switchboard_tests::{member, start_router};

/// The Python with grpcio: `SWITCHBOARD_PYTHON`, else the venv that
/// `scripts/test` makes.
fn python() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/py/bin/python");
    let candidate = std::env::var_os("SWITCHBOARD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or(venv);
    let ok = std::process::Command::new(&candidate)
        .args(["-c", "import grpc, grpc_reflection"])
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(candidate)
}

/// Runs a script from `tests/python` with `args`; `None` when Python with
/// grpcio is missing outside CI (skipped, and said so).
async fn run_python(script: &str, args: &[String]) -> Option<String> {
    let Some(py) = python() else {
        // CI (and ./scripts/test) always provides it; a bare `cargo test` says why it skips.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test: grpcio missing; run ./scripts/test"
        );
        eprintln!(
            "SKIPPED: no Python with grpcio and grpcio-reflection (./scripts/test installs them into target/py)"
        );
        return None;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(py)
            .arg(script)
            .args(args)
            .output(),
    )
    .await;
    let Ok(Ok(out)) = out else {
        panic!("python did not finish")
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}

#[tokio::test]
async fn python_grpcio_discovers_the_service_by_reflection() {
    let router = start_router(|_| {}).await;
    let Some(stdout) = run_python("admin_reflection.py", &[router.admin_addr().to_string()]).await
    else {
        return;
    };
    assert!(stdout.contains("reflection ok"), "{stdout}");
    // The room it created is real.
    let rooms = router::driver::call_engine(&router.engine_handle(), |e, _| e.room_infos()).await;
    assert!(rooms.is_some_and(|r| r.iter().any(|r| r.name == "from-python")));
    router.shutdown().await;
}

/// With `[tls] admin = true` the admin API speaks TLS: grpcio verifies the
/// router's self-signed certificate (its own file as the CA) and calls with
/// an access token holding the admin grant; a plaintext caller gets nothing.
#[tokio::test]
async fn python_grpcio_calls_the_admin_api_over_tls_with_an_access_token() {
    use router::auth::{Claims, Grants, SigningKey};
    let key = SigningKey::generate();
    let public = key.public_key();
    let state = switchboard_tests::scratch("admin-tls-state");
    let router = start_router(|c| {
        c.state_dir = Some(state.clone());
        c.tls.admin = true;
        c.auth.mode = router::config::AuthMode::Token;
        c.auth.keys = vec![router::config::KeyConfig::new("k1", public)];
    })
    .await;
    let now = router::driver::unix_ms_now() / 1000;
    let token = key
        .mint(
            "k1",
            &Claims::new(
                "ops-script",
                now + 600,
                Grants {
                    admin: true,
                    ..Grants::default_none()
                },
            ),
        )
        .unwrap_or_default();
    let cert = state.join("tls.pem");
    let args = [
        router.admin_addr().to_string(),
        cert.display().to_string(),
        token,
    ];
    let Some(stdout) = run_python("admin_reflection.py", &args).await else {
        return;
    };
    assert!(stdout.contains("reflection ok"), "{stdout}");
    // A plaintext gRPC client cannot even reach the service.
    let url = format!("http://{}", router.admin_addr());
    let Ok(channel) = tonic::transport::Channel::from_shared(url).map(|e| e.connect_lazy()) else {
        panic!()
    };
    let plain = proto_grpc::admin::admin_client::AdminClient::new(channel)
        .list_rooms(proto_grpc::admin::ListRoomsRequest {})
        .await;
    assert!(plain.is_err(), "{plain:?}");
    router.shutdown().await;
}

/// Every `$ grpcurl` example of docs/admin.md runs as documented, in order,
/// from the state the document describes: `lobby` with `ann` holding the
/// floor and `bob`.
#[tokio::test]
async fn every_grpcurl_example_in_the_admin_docs_works() {
    let router = start_router(|_| {}).await;
    let (mut ann, _am) = member(router.control_addr(), "ann", "lobby").await;
    let (_bob, _bm) = member(router.control_addr(), "bob", "lobby").await;
    assert!(matches!(
        ann.request_floor(0).await,
        Ok(client::FloorAnswer::Granted { .. })
    ));
    let doc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/admin.md");
    let Some(stdout) = run_python(
        "doc_examples.py",
        &[router.admin_addr().to_string(), doc.display().to_string()],
    )
    .await
    else {
        return;
    };
    println!("{stdout}");
    let count = stdout
        .lines()
        .find_map(|l| l.strip_prefix("doc examples ok: "))
        .and_then(|n| n.trim().parse::<usize>().ok());
    // Every RPC of the service appears at least once.
    let text = std::fs::read_to_string(&doc).unwrap_or_default();
    for rpc in [
        "ListPlugins",
        "CreateRoom",
        "ListRooms",
        "GetRoom",
        "CloseRoom",
        "ListParticipants",
        "KickParticipant",
        "MuteParticipant",
        "GrantFloor",
        "RevokeFloor",
        "SendChat",
        "ApproveJoin",
        "DenyJoin",
        "GetStats",
        "WatchRoom",
    ] {
        assert!(
            text.contains(&format!("switchboard.v1.Admin/{rpc}")),
            "docs/admin.md has no grpcurl example of {rpc}"
        );
    }
    assert!(count.is_some_and(|n| n >= 25), "{stdout}");
    // The last example closed the lobby.
    let rooms = router::driver::call_engine(&router.engine_handle(), |e, _| e.room_infos()).await;
    assert!(rooms.is_some_and(|r| r.iter().all(|r| r.name != "lobby")));
    router.shutdown().await;
}
