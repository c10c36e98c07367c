//! The engine task: owns the [`Engine`], feeds it connection input, STUN
//! requests, timers and admin calls, and dispatches its outputs to
//! connections, media workers and watchers after every step (the str0m
//! rule: handle one input, then drain every output).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use plugin_api::SessionId;

use tokio::sync::{mpsc, oneshot, watch};

use super::SHUTDOWN_GRACE;
use super::outbox::{Job, Outbox, Writers};
use super::watch::{Subscription, WatchError, WatchHub};
use crate::engine::{Engine, Input, MediaCommand, Output, Told};
use crate::native::Renderer;

/// Every open connection's outbox, by session.
type Conns = rustc_hash::FxHashMap<SessionId, Arc<Outbox>>;

/// What a front-end's session task is given by the engine task: what the
/// engine told the session, in the engine's language, for the front-end to
/// render its own way; or that the router closes it.
#[derive(Debug, Clone)]
pub enum FrontOut {
    Told(Arc<Told>),
    Close,
}

/// A front-end session's queue. A session that lets it fill up is closed,
/// as a native one whose outbox overflows is.
pub type FrontSink = mpsc::Sender<FrontOut>;

/// How many messages a front-end session's queue holds.
pub const FRONT_QUEUE: usize = 1024;

/// Sessions of front-ends other than the native one.
type Fronts = rustc_hash::FxHashMap<SessionId, FrontSink>;

/// What the engine task receives.
pub enum EngineEvent {
    Input(Input),
    /// A control line, with when its connection read it (for
    /// [`CommandTimes`]).
    Line {
        input: Input,
        read_at: std::time::Instant,
    },
    /// A new connection's outbox; sent before its `Connected`.
    Register {
        session: SessionId,
        outbox: Arc<Outbox>,
    },
    /// A new session of another front-end (a seed's): what it is told goes
    /// to `sink` unrendered. Sent before its `Connected`.
    RegisterFront {
        session: SessionId,
        sink: FrontSink,
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
    media: MediaOut,
    mut shutdown: watch::Receiver<bool>,
    times: SharedCommandTimes,
) {
    let mut conns: Conns = Conns::default();
    let mut fronts: Fronts = Fronts::default();
    let mut writers = Writers::spawn(writer_count());
    let mut native = Renderer::default();
    // Connections told to close; at shutdown we wait for them to flush.
    let mut closing: Vec<Arc<Outbox>> = Vec::new();
    loop {
        let deadline = engine.poll_timeout().map(tokio::time::Instant::from_std);
        let mut timed = None;
        let mut stop = false;
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(EngineEvent::Input(input)) => {
                    let gone = match &input {
                        Input::Disconnected { session } => Some(*session),
                        _ => None,
                    };
                    engine.handle_input(now(), input);
                    if let Some(session) = gone {
                        // Normally the engine closed it; a session it never
                        // knew is forgotten here.
                        dispatch(&mut engine, &mut hub, &mut conns, &mut fronts, &mut closing, &mut writers, &media, &mut native);
                        if conns.remove(&session).is_some() {
                            writers.to(session, Job::Forget(session));
                        }
                        fronts.remove(&session);
                    }
                }
                Some(EngineEvent::Line { input, read_at }) => {
                    engine.handle_input(now(), input);
                    timed = engine.last_command().map(|c| (c, read_at));
                }
                Some(EngineEvent::Register { session, outbox }) => {
                    conns.insert(session, outbox.clone());
                    writers.to(session, Job::Register(outbox));
                }
                Some(EngineEvent::RegisterFront { session, sink }) => {
                    fronts.insert(session, sink);
                }
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
                None => stop = true,
            },
            Some(input) = stun.recv() => engine.handle_input(now(), input),
            _ = async { if let Some(d) = deadline { tokio::time::sleep_until(d).await } }, if deadline.is_some() => {
                engine.handle_timeout(now());
            }
            _ = shutdown.changed() => {
                engine.shutdown("the router is shutting down");
                stop = true;
            }
        }
        dispatch(
            &mut engine,
            &mut hub,
            &mut conns,
            &mut fronts,
            &mut closing,
            &mut writers,
            &media,
            &mut native,
        );
        // Handing the writers their batches waits only while a writer's
        // queue is full: backpressure on the router's input.
        writers.flush().await;
        if let Some((command, read_at)) = timed
            && let Ok(mut t) = times.lock()
        {
            t.record(command, read_at.elapsed());
        }
        closing.retain(|o| !o.is_finished());
        if stop {
            break;
        }
    }
    // Let connection tasks flush what they have, then return.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while tokio::time::Instant::now() < deadline {
        closing.retain(|o| !o.is_finished());
        if closing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The engine task's ends of the media workers, by worker index: each
/// one's command queue, and a clone of its socket for STUN answers.
pub(crate) struct MediaOut {
    pub(crate) commands: Vec<std::sync::mpsc::Sender<MediaCommand>>,
    pub(crate) replies: Vec<std::net::UdpSocket>,
}

/// Writer tasks: one per core but one, at least one and at most four.
/// The core left is for commands: with as many busy writers as cores,
/// handing a writer its batch wakes a parked runtime thread, and the kernel
/// may run it on the engine's core in the middle of a command (floor grants
/// took 2 to 3 ms at their p99 that way on two cores, 0.2 ms with one
/// writer; the whole room heard a grant 30% later).
fn writer_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).clamp(1, 4))
}

/// One rendered line, newline included, shared by its receivers.
type Line = Arc<[u8]>;

/// Hands what is for front-end sessions to them, and returns the rest (a
/// message for a room with both keeps its native receivers).
fn to_fronts(fronts: &mut Fronts, out: Output) -> Option<Output> {
    let mut give = |session: SessionId, what: FrontOut| {
        let Some(sink) = fronts.get(&session) else {
            return false;
        };
        // A front-end session too slow to take what it is told is closed
        // (its task sees its queue end), as a native slow consumer is.
        if sink.try_send(what).is_err() {
            fronts.remove(&session);
        }
        true
    };
    match out {
        Output::Send { session, told }
        | Output::SendBulk { session, told }
        | Output::Answer { session, told, .. }
            if give(session, FrontOut::Told(told.clone())) =>
        {
            None
        }
        Output::Close { session } if give(session, FrontOut::Close) => {
            fronts.remove(&session);
            None
        }
        Output::SendAll { mut sessions, told } => {
            sessions.retain(|s| !give(*s, FrontOut::Told(told.clone())));
            (!sessions.is_empty()).then_some(Output::SendAll { sessions, told })
        }
        other => Some(other),
    }
}

/// Hands the engine's outputs on: lines to the writers (in one batch per
/// writer, sent by [`Writers::flush`]), media commands to the media
/// workers, events to watchers.
#[allow(clippy::too_many_arguments)]
fn dispatch(
    engine: &mut Engine,
    hub: &mut WatchHub,
    conns: &mut Conns,
    fronts: &mut Fronts,
    closing: &mut Vec<Arc<Outbox>>,
    writers: &mut Writers,
    media: &MediaOut,
    native: &mut Renderer,
) {
    // One Arc told to several receivers one after the other is rendered
    // once for all of them.
    let mut last: Option<(Arc<Told>, Option<Line>)> = None;
    while let Some(out) = engine.poll_output() {
        let out = if fronts.is_empty() {
            out
        } else {
            match to_fronts(fronts, out) {
                Some(out) => out,
                None => continue,
            }
        };
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
                    writers.to(session, Job::One(session, line));
                }
            }
            Output::Answer {
                session,
                told,
                request,
            } => {
                if let Some(line) = native.line(&told) {
                    let line = crate::native::with_request_id(&line, &request);
                    writers.to(session, Job::One(session, line));
                }
            }
            Output::SendAll { sessions, told } => {
                if let Some(line) = native.line(&told) {
                    writers.to_many(sessions, line);
                }
            }
            Output::SendBulk { session, told } => {
                if let Some(line) = native.line(&told) {
                    writers.to(session, Job::Bulk(session, line));
                }
            }
            Output::Close { session } => {
                if let Some(o) = conns.remove(&session) {
                    writers.to(session, Job::Close(session));
                    closing.push(o);
                }
            }
            // A STUN answer goes out at once, on the worker's own socket
            // (what the client saw it reach): the worker would send it only
            // after its next receive, up to its 50 ms poll later. The bind
            // it goes with is applied by the worker before the first packet
            // from that address is routed.
            Output::Media {
                worker,
                cmd: MediaCommand::Reply { to, bytes },
            } => {
                if let Some(s) = media.replies.get(worker) {
                    let _ = s.send_to(&bytes, to);
                }
            }
            Output::Media { worker, cmd } => {
                if let Some(w) = media.commands.get(worker) {
                    let _ = w.send(cmd);
                }
            }
            Output::RoomEvent(ev) => hub.publish(&ev),
        }
    }
}
