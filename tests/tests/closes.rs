//! Every close the router starts reaches a client that is writing at that
//! moment: the router half-closes and drains the client's input before it
//! lets the socket go (a close with unread input is a reset, and a reset
//! drops the last message at the client).

use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use proto::control::ServerMessage;
use switchboard_tests::start_router;

/// A client that says HELLO and `first`, then keeps writing `line` until
/// its writes fail. It reads only once `go` is set, through a small
/// receive buffer: what the router wrote waits in the router's send queue,
/// and the router's socket has input it has not read, when the router
/// closes it, as with a client busy writing. Its reader and writer are
/// threads of their own, as another program's would be: they take no turn
/// from the router's tasks.
struct Busy {
    reader: JoinHandle<Vec<ServerMessage>>,
}

fn busy(
    addr: std::net::SocketAddr,
    first: Vec<u8>,
    line: &'static [u8],
    go: Arc<AtomicBool>,
) -> Busy {
    let socket = match socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let _ = socket.set_recv_buffer_size(8 * 1024);
    if let Err(e) = socket.connect(&addr.into()) {
        panic!("{e}");
    }
    let stream: std::net::TcpStream = socket.into();
    let Ok(mut w) = stream.try_clone() else {
        panic!("clone")
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stop_writing = stop.clone();
    std::thread::spawn(move || {
        let _ = w.write_all(&first);
        let batch = line.repeat(512 / line.len());
        let until = std::time::Instant::now() + Duration::from_secs(30);
        // Half a KB a millisecond: mostly something unread at the router,
        // and no thirty threads burning two cores.
        while !stop_writing.load(Ordering::Relaxed)
            && std::time::Instant::now() < until
            && w.write_all(&batch).is_ok()
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let reader = std::thread::spawn(move || {
        while !go.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut r = BufReader::new(stream);
        let mut got = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(n) if n > 0 => {}
                _ => {
                    stop.store(true, Ordering::Relaxed);
                    return got;
                }
            }
            if let Ok(m) = serde_json::from_str::<ServerMessage>(&line) {
                got.push(m);
            }
        }
    });
    Busy { reader }
}

impl Busy {
    /// What it read, once its connection ended.
    async fn read(self) -> Vec<ServerMessage> {
        tokio::task::spawn_blocking(move || self.reader.join().unwrap_or_default())
            .await
            .unwrap_or_default()
    }
}

/// One of these tests at a time: each keeps clients writing as fast as
/// they can.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn hello(nick: &str) -> String {
    format!("{{\"type\":\"HELLO\",\"version\":1,\"nickname\":\"{nick}\"}}\n")
}

/// Commands refused at once (`UNKNOWN_ROOM`, then `RATE_LIMITED`), whose
/// answers fill the client's receive window, and fewer than the refusal
/// budget.
fn refused(n: usize) -> Vec<u8> {
    let line = format!(
        "{{\"type\":\"JOIN\",\"room\":\"{}\"}}\n",
        "no-such-room-".repeat(4)
    );
    line.repeat(n).into_bytes()
}

/// Waits until the router refused `n` commands (their answers are queued).
async fn wait_refused(router: &router::driver::Router, n: u64) {
    // A condition, not a timing: a starved machine takes long, not forever.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let s = router.engine_stats().await;
        if s.is_some_and(|s| s.refusals >= n) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_busy_clients_all_get_server_close() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Thirty floods can starve a busy 2-core machine for seconds: the HELLO
    // deadline and the silence timeout are not what this test is about.
    let router = start_router(|c| {
        c.limits.hello_timeout_ms = 120_000;
        c.limits.silence_timeout_ms = 120_000;
    })
    .await;
    let addr = router.control_addr();
    let go = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..30 {
        let mut first = hello(&format!("c{i}")).into_bytes();
        first.extend(refused(80));
        clients.push(busy(addr, first, b"\n", go.clone()));
    }
    wait_refused(&router, 30 * 80).await;
    let stop = tokio::spawn(router.shutdown());
    // The clients read again while the router closes (its closes started
    // at once; without the drain, those resets already lost the ends).
    tokio::time::sleep(Duration::from_millis(100)).await;
    go.store(true, Ordering::Release);
    let mut missed = 0;
    for c in clients {
        let got = c.read().await;
        if !matches!(got.last(), Some(ServerMessage::ServerClose { .. })) {
            missed += 1;
        }
    }
    let _ = stop.await;
    assert_eq!(missed, 0, "clients that lost SERVER_CLOSE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_closed_for_errors_while_writing_reads_why() {
    let _one = ONE_AT_A_TIME.lock().await;
    let router = start_router(|_| {}).await;
    let addr = router.control_addr();
    let go = Arc::new(AtomicBool::new(false));
    let mut first = hello("x").into_bytes();
    first.extend(refused(80));
    first.extend(b"not json\n".repeat(30));
    let c = busy(addr, first, b"\n", go.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while router
        .engine_stats()
        .await
        .is_some_and(|s| s.closed_for_errors == 0)
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    go.store(true, Ordering::Release);
    let got = c.read().await;
    assert!(
        matches!(got.last(), Some(ServerMessage::Error { code, .. })
            if *code == proto::control::ErrorCode::TooManyErrors),
        "last: {:?}",
        got.last()
    );
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_refused_full_while_writing_reads_why() {
    let _one = ONE_AT_A_TIME.lock().await;
    let router = start_router(|c| c.limits.max_sessions = 1).await;
    let addr = router.control_addr();
    let go = Arc::new(AtomicBool::new(false));
    let (_a, _) = switchboard_tests::member(addr, "a", "lobby").await;
    // After HELLO: answered FULL and closed, with all this unread.
    let mut first = hello("b").into_bytes();
    first.extend(refused(80));
    let c = busy(addr, first, b"\n", go.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while router
        .engine_stats()
        .await
        .is_some_and(|s| s.refused_full == 0)
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    go.store(true, Ordering::Release);
    let got = c.read().await;
    assert!(
        matches!(got.last(), Some(ServerMessage::Full { .. })),
        "last: {:?}",
        got.last()
    );
    router.shutdown().await;
}
