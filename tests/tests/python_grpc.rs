//! The admin API from a client this project did not write: Python grpcio with
//! grpcio-reflection, installed by `scripts/test` into `target/py`.

use std::path::PathBuf;
use std::time::Duration;

use switchboard_tests::start_router;

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

#[tokio::test]
async fn python_grpcio_discovers_the_service_by_reflection() {
    let Some(py) = python() else {
        // CI (and ./scripts/test) always provides it; a bare `cargo test` says why it skips.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test: grpcio missing; run ./scripts/test"
        );
        eprintln!(
            "SKIPPED: no Python with grpcio and grpcio-reflection (./scripts/test installs them into target/py)"
        );
        return;
    };
    let router = start_router(|_| {}).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/admin_reflection.py");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(py)
            .arg(script)
            .arg(router.admin_addr().to_string())
            .output(),
    )
    .await;
    let Ok(Ok(out)) = out else {
        panic!("python did not finish")
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("reflection ok"), "{stdout}");
    // The room it created is real.
    let rooms = router::driver::call_engine(&router.engine_handle(), |e, _| e.room_infos()).await;
    assert!(rooms.is_some_and(|r| r.iter().any(|r| r.name == "from-python")));
    router.shutdown().await;
}
