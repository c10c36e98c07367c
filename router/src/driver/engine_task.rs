//! The engine task: owns the [`Engine`], feeds it connection input, STUN
//! requests, timers and admin calls, and dispatches its outputs to
//! connections, media workers and watchers after every step (the str0m
//! rule: handle one input, then drain every output).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use plugin_api::SessionId;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use super::SHUTDOWN_GRACE;
use super::connection::{BULK_DROPPED, ConnCommand, ConnHandle};
use super::watch::{Subscription, WatchError, WatchHub};
use crate::engine::{Engine, Input, MediaCommand, Output, Told};
use crate::native::Renderer;

/// Every connection's queues, by session (looked up for every message).
type Conns = rustc_hash::FxHashMap<SessionId, ConnHandle>;

/// What the engine task receives.
pub enum EngineEvent {
    Input(Input),
    /// A control line, with when its connection read it (for
    /// [`CommandTimes`]).
    Line {
        input: Input,
        read_at: std::time::Instant,
    },
    /// A new connection's outgoing queue; sent before its `Connected`.
    Register {
        session: SessionId,
        conn: ConnHandle,
    },
    /// Runs on the engine task with exclusive access (admin calls, stats);
    /// outputs it causes are dispatched right after.
    Call(EngineCall),
    /// Subscribes to a room's events, answering with the room's state at the
    /// point where the subscription starts.
    Watch {
        room: String,
        reply: oneshot::Sender<Result<Subscription, WatchError>>,
    },
}

/// A closure run by the engine task.
pub type EngineCall = Box<dyn FnOnce(&mut Engine, std::time::Instant) + Send>;

/// Runs `f` on the engine task and returns its result; `None` if the engine
/// has stopped.
pub async fn call_engine<R: Send + 'static>(
    engine: &mpsc::Sender<EngineEvent>,
    f: impl FnOnce(&mut Engine, std::time::Instant) -> R + Send + 'static,
) -> Option<R> {
    let (tx, rx) = oneshot::channel();
    let call: EngineCall = Box::new(move |e, now| {
        let _ = tx.send(f(e, now));
    });
    engine.send(EngineEvent::Call(call)).await.ok()?;
    rx.await.ok()
}

/// How long each type of control command spent in the router: from its
/// line being read to everything it caused being queued for writing.
#[derive(Default)]
pub struct CommandTimes {
    by_command: HashMap<&'static str, hdrhistogram::Histogram<u64>>,
}

/// One command type's figures, µs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLatency {
    pub command: &'static str,
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl CommandTimes {
    pub fn record(&mut self, command: &'static str, took: Duration) {
        let h = self.by_command.entry(command).or_insert_with(|| {
            // 1 µs to 60 s at 3 significant digits; bounds this wide
            // cannot fail.
            hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
                .unwrap_or_else(|_| unreachable!())
        });
        h.saturating_record((took.as_micros() as u64).max(1));
    }

    /// Forgets every figure.
    pub fn clear(&mut self) {
        self.by_command.clear();
    }

    /// Every command type seen, by name.
    pub fn summary(&self) -> Vec<CommandLatency> {
        let mut v: Vec<CommandLatency> = self
            .by_command
            .iter()
            .map(|(command, h)| CommandLatency {
                command,
                count: h.len(),
                p50_us: h.value_at_quantile(0.5),
                p99_us: h.value_at_quantile(0.99),
                p999_us: h.value_at_quantile(0.999),
                max_us: h.max(),
            })
            .collect();
        v.sort_by_key(|c| c.command);
        v
    }
}

/// Shared between the engine task, which records, and the admin API.
pub type SharedCommandTimes = Arc<std::sync::Mutex<CommandTimes>>;

/// Wall-clock milliseconds since the Unix epoch, for watchers.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

pub(crate) async fn run_engine(
    mut engine: Engine,
    mut hub: WatchHub,
    mut rx: mpsc::Receiver<EngineEvent>,
    mut stun: mpsc::Receiver<Input>,
    media: Vec<std::sync::mpsc::Sender<MediaCommand>>,
    mut shutdown: watch::Receiver<bool>,
    times: SharedCommandTimes,
) {
    let mut conns: Conns = Conns::default();
    let mut native = Renderer::default();
    // Connections told to close; at shutdown we wait for them to flush.
    let mut closing: Vec<mpsc::Sender<ConnCommand>> = Vec::new();
    loop {
        let deadline = engine.poll_timeout().map(tokio::time::Instant::from_std);
        let mut timed = None;
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(EngineEvent::Input(input)) => engine.handle_input(now(), input),
                Some(EngineEvent::Line { input, read_at }) => {
                    engine.handle_input(now(), input);
                    timed = engine.last_command().map(|c| (c, read_at));
                }
                Some(EngineEvent::Register { session, conn }) => { conns.insert(session, conn); }
                Some(EngineEvent::Call(f)) => f(&mut engine, now()),
                Some(EngineEvent::Watch { room, reply }) => {
                    // Outputs are dispatched after every event, so the
                    // snapshot's seq is the last event watchers were sent.
                    let sub = engine
                        .snapshot(now(), &room)
                        .map_err(WatchError::from)
                        .and_then(|snapshot| {
                            Ok(Subscription { snapshot, events: hub.subscribe(&room)? })
                        });
                    let _ = reply.send(sub);
                }
                None => break,
            },
            Some(input) = stun.recv() => engine.handle_input(now(), input),
            _ = async { if let Some(d) = deadline { tokio::time::sleep_until(d).await } }, if deadline.is_some() => {
                engine.handle_timeout(now());
            }
            _ = shutdown.changed() => {
                engine.shutdown("the router is shutting down");
                dispatch(&mut engine, &mut hub, &mut conns, &mut closing, &media, &mut native);
                break;
            }
        }
        dispatch(
            &mut engine,
            &mut hub,
            &mut conns,
            &mut closing,
            &media,
            &mut native,
        );
        if let Some((command, read_at)) = timed
            && let Ok(mut t) = times.lock()
        {
            t.record(command, read_at.elapsed());
        }
        closing.retain(|tx| !tx.is_closed());
    }
    // Let connection tasks flush what they have (their receivers drop when
    // they finish), then return.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while tokio::time::Instant::now() < deadline {
        closing.retain(|tx| !tx.is_closed());
        if closing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One rendered line, newline included, shared by its receivers.
type Line = Arc<[u8]>;

/// Queues `line` for `session`; a session whose queue is full (a slow
/// reader) or closed is noted to be dropped.
fn queue(conns: &Conns, session: SessionId, line: Arc<[u8]>, overflowed: &mut Vec<SessionId>) {
    if let Some(c) = conns.get(&session)
        && let Err(e) = c.tx.try_send(ConnCommand::Send(line))
    {
        // Only a full queue is news: a closed one is a client that went
        // away, whose disconnection the engine is about to hear of.
        if matches!(e, mpsc::error::TrySendError::Full(_)) {
            warn!(session, "outgoing queue full; dropping the session");
        }
        overflowed.push(session);
    }
}

fn dispatch(
    engine: &mut Engine,
    hub: &mut WatchHub,
    conns: &mut Conns,
    closing: &mut Vec<mpsc::Sender<ConnCommand>>,
    media: &[std::sync::mpsc::Sender<MediaCommand>],
    native: &mut Renderer,
) {
    let mut overflowed = Vec::new();
    // One Arc told to several receivers one after the other is rendered
    // once for all of them.
    let mut last: Option<(Arc<Told>, Option<Line>)> = None;
    loop {
        while let Some(out) = engine.poll_output() {
            match out {
                Output::Send { session, told } => {
                    let line = match &last {
                        Some((t, line)) if Arc::ptr_eq(t, &told) => line.clone(),
                        _ => {
                            let line = native.line(&told);
                            last = Some((told, line.clone()));
                            line
                        }
                    };
                    if let Some(line) = line {
                        queue(conns, session, line, &mut overflowed);
                    }
                }
                Output::SendAll { sessions, told } => {
                    if let Some(line) = native.line(&told) {
                        for session in sessions {
                            queue(conns, session, line.clone(), &mut overflowed);
                        }
                    }
                }
                Output::SendBulk { session, told } => {
                    if let Some(c) = conns.get(&session)
                        && let Some(line) = native.line(&told)
                        && c.bulk.try_send(line).is_err()
                    {
                        BULK_DROPPED.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Output::Close { session } => {
                    if let Some(c) = conns.remove(&session) {
                        // If the queue is full the sender is dropped here, which
                        // ends the task once it drains the queue: a close either way.
                        if c.tx.try_send(ConnCommand::Close).is_ok() {
                            closing.push(c.tx);
                        }
                    }
                }
                Output::Media { worker, cmd } => {
                    if let Some(w) = media.get(worker) {
                        let _ = w.send(cmd);
                    }
                }
                Output::RoomEvent(ev) => hub.publish(&ev),
            }
        }
        if overflowed.is_empty() {
            return;
        }
        // Ending these sessions makes more output (LEFT events, floor
        // released, USERLIST): dispatched by the next turn of the loop.
        for session in overflowed.drain(..) {
            if conns.remove(&session).is_some() {
                engine.handle_input(now(), Input::Disconnected { session });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::driver::wall_clock_now;
    use crate::engine::{EngineConfig, RoomSpec, Start};
    use crate::events::RoomEventKind;
    use crate::registry::Registry;

    fn line(engine: &mut Engine, session: SessionId, json: &str) {
        engine.handle_input(
            now(),
            Input::Line {
                session,
                line: json.as_bytes().to_vec(),
            },
        );
    }

    /// A session whose connection task is gone is dropped inside `dispatch`;
    /// everything that causes (its LEFT event, the others' USERLIST) must
    /// still go out, none of it swallowed.
    #[tokio::test]
    async fn outputs_caused_by_a_dead_connection_are_all_dispatched() {
        let lobby = RoomSpec {
            name: "lobby".into(),
            kind: "ptt".into(),
            max_participants: 0,
            options: Default::default(),
        };
        let start = Start {
            clock: wall_clock_now(),
            seed: 1,
        };
        let Ok(mut engine) = Engine::new(
            EngineConfig::default(),
            Registry::builtin(),
            vec![lobby],
            start,
        ) else {
            panic!("engine")
        };
        let mut hub = WatchHub::new(4, 64);
        let mut conns = Conns::default();
        let mut native = Renderer::default();
        let mut closing = Vec::new();
        let (media_tx, _media_rx) = std::sync::mpsc::channel();
        let media = [media_tx];
        let mut inbox = HashMap::new();
        for (id, nick) in [(1, "ann"), (2, "bob")] {
            let (tx, rx) = mpsc::channel(64);
            let (bulk, _) = mpsc::channel(1);
            conns.insert(id, ConnHandle { tx, bulk });
            inbox.insert(id, rx);
            let peer = SocketAddr::from(([127, 0, 0, 1], 1));
            engine.handle_input(now(), Input::Connected { session: id, peer });
            line(
                &mut engine,
                id,
                &format!(r#"{{"type":"HELLO","version":1,"nickname":"{nick}"}}"#),
            );
            line(&mut engine, id, r#"{"type":"JOIN","room":"lobby"}"#);
        }
        dispatch(
            &mut engine,
            &mut hub,
            &mut conns,
            &mut closing,
            &media,
            &mut native,
        );
        let Ok(mut watcher) = hub.subscribe("lobby") else {
            panic!("subscribe")
        };
        // bob's connection task ends without the engine hearing of it yet.
        drop(inbox.remove(&2));
        // ann takes the floor: MIC_GRANTED to bob fails, so bob is dropped.
        line(&mut engine, 1, r#"{"type":"MIC_REQUEST"}"#);
        dispatch(
            &mut engine,
            &mut hub,
            &mut conns,
            &mut closing,
            &media,
            &mut native,
        );

        let mut seqs = Vec::new();
        let mut left = false;
        while let Ok(item) = watcher.try_recv() {
            seqs.push(item.event.seq);
            left |= matches!(item.event.kind, RoomEventKind::Left { session: 2, .. });
        }
        assert!(left, "bob's LEFT event was lost: {seqs:?}");
        assert_eq!(seqs, (3..3 + seqs.len() as u64).collect::<Vec<_>>());
        let Some(ann) = inbox.get_mut(&1) else {
            panic!()
        };
        let mut last_userlist = None;
        while let Ok(ConnCommand::Send(line)) = ann.try_recv() {
            if let Ok(proto::control::ServerMessage::Userlist { users, .. }) =
                serde_json::from_slice(&line)
            {
                last_userlist = Some(users.len());
            }
        }
        assert_eq!(last_userlist, Some(1), "ann was not told bob left");
    }
}
