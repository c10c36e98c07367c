//! Outgoing bytes: one [`Outbox`] per connection, written by a few writer
//! tasks rather than by one task per connection.
//!
//! A message for a whole room (a floor grant to 10,000 members) used to be
//! one queue push and one task wake-up per member, all on the engine task.
//! Now the engine task hands each writer task one job for the whole
//! audience, and the writer writes each member's socket straight away
//! (`try_write`, no wake-up) when nothing is queued before it. Only a
//! connection whose socket is full gets bytes queued in its outbox and its
//! own task woken to drain them when the socket drains. Lines are never
//! interleaved: whoever writes holds the outbox's lock, and a line written
//! in part stays at the head until it is written whole.

use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use plugin_api::SessionId;
use tokio::sync::{Notify, mpsc};
use tracing::warn;

use super::stream::ControlStream;

/// One rendered line, newline included, shared by its receivers.
pub type Line = Arc<[u8]>;

/// Messages queued for one connection before it counts as a slow consumer.
pub const CONNECTION_QUEUE: usize = 1024;
/// Bulk messages (file chunks) queued for one connection; beyond this they
/// are dropped, and the transfer's acknowledgements repair the loss.
pub const BULK_QUEUE: usize = 64;
/// Bulk messages dropped because a connection's bulk queue was full.
pub static BULK_DROPPED: AtomicU64 = AtomicU64::new(0);
/// A write that waits longer than this for the socket closes the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Batches queued for one writer task before the engine task waits for it:
/// the router takes commands no faster than it can deliver what they cause.
pub const WRITER_QUEUE: usize = 256;
/// Sockets a writer task writes before it lets other tasks run.
const WRITES_PER_TURN: usize = 128;
/// Lines gathered into one vectored write when a connection drains.
const DRAIN_SLICES: usize = 64;

/// How a connection's outbox ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Write what is queued, then close (the router's own closes).
    AfterDrain,
    /// Close now, dropping what is queued (a slow consumer, a failed write).
    Now,
}

#[derive(Default)]
struct State {
    /// The line being written, and how many of its bytes are written.
    partial: Option<(Line, usize)>,
    queue: VecDeque<Line>,
    bulk: VecDeque<Line>,
    end: Option<End>,
}

impl State {
    fn idle(&self) -> bool {
        self.partial.is_none() && self.queue.is_empty() && self.bulk.is_empty()
    }
}

/// What a connection's task is told by [`Outbox::drain`].
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Everything is written; wait for the next wake-up.
    Idle,
    /// Everything is written and the router closes the connection.
    Close,
    /// The connection is to end now (slow consumer, write failed or timed out).
    Abort,
}

/// One connection's outgoing bytes.
pub struct Outbox {
    session: SessionId,
    /// Unset while the connection's task finds out whether its client
    /// speaks TLS: lines are queued meanwhile.
    stream: std::sync::OnceLock<Arc<ControlStream>>,
    state: Mutex<State>,
    wake: Notify,
    finished: AtomicBool,
}

impl Outbox {
    pub fn new(session: SessionId, stream: Arc<ControlStream>) -> Arc<Outbox> {
        let o = Self::unattached(session);
        o.attach(stream);
        o
    }

    /// An outbox whose stream comes later ([`Outbox::attach`]).
    pub fn unattached(session: SessionId) -> Arc<Outbox> {
        Arc::new(Outbox {
            session,
            stream: std::sync::OnceLock::new(),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            finished: AtomicBool::new(false),
        })
    }

    /// Gives the outbox its stream; what was queued before is written when
    /// the connection's task next drains.
    pub fn attach(&self, stream: Arc<ControlStream>) {
        let _ = self.stream.set(stream);
        if !self.lock().idle() {
            self.wake.notify_one();
        }
    }

    /// Whether the router has asked to end the connection.
    pub fn ending(&self) -> bool {
        self.lock().end.is_some()
    }

    pub fn session(&self) -> SessionId {
        self.session
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A writer that panicked mid-push leaves whole lines behind: the
        // state is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes `line` now if nothing is queued before it and the socket takes
    /// it, else queues it and wakes the connection's task. A connection with
    /// [`CONNECTION_QUEUE`] lines queued is a slow consumer: it is ended.
    pub fn push(&self, line: Line) {
        let mut st = self.lock();
        if st.end.is_some() || self.is_finished() {
            return;
        }
        if st.idle() {
            self.write_or_queue(&mut st, line);
        } else if st.queue.len() >= CONNECTION_QUEUE {
            warn!(
                session = self.session,
                "outgoing queue full; dropping the session"
            );
            st.end = Some(End::Now);
            self.wake.notify_one();
        } else {
            st.queue.push_back(line);
        }
    }

    /// Like [`Outbox::push`] for a file chunk: queued behind every message,
    /// and dropped (counted in [`BULK_DROPPED`]) when [`BULK_QUEUE`] wait.
    pub fn push_bulk(&self, line: Line) {
        let mut st = self.lock();
        if st.end.is_some() || self.is_finished() {
            return;
        }
        if st.idle() {
            self.write_or_queue(&mut st, line);
        } else if st.bulk.len() >= BULK_QUEUE {
            BULK_DROPPED.fetch_add(1, Ordering::Relaxed);
        } else {
            st.bulk.push_back(line);
        }
    }

    fn write_or_queue(&self, st: &mut State, line: Line) {
        let Some(stream) = self.stream.get() else {
            st.queue.push_back(line);
            return;
        };
        match stream.try_write(&line) {
            Ok(n) if n == line.len() => return,
            Ok(n) => st.partial = Some((line, n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => st.partial = Some((line, 0)),
            Err(_) => st.end = Some(End::Now),
        }
        self.wake.notify_one();
    }

    /// Closes the connection once what is queued is written.
    pub fn close(&self) {
        let mut st = self.lock();
        st.end.get_or_insert(End::AfterDrain);
        self.wake.notify_one();
    }

    /// Whether the connection's task has ended.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Waits until the connection's task has work in its outbox.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Called by the connection's task when it ends: the socket is shut
    /// down (its descriptor closes when the writers let go of the outbox),
    /// later lines are dropped, and what is queued is freed.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::Release);
        if let Some(stream) = self.stream.get() {
            stream.shutdown(std::net::Shutdown::Both);
        }
        let mut st = self.lock();
        st.partial = None;
        st.queue.clear();
        st.bulk.clear();
    }

    /// Writes what is queued, messages before bulk, waiting for the socket
    /// at most `timeout` each time it is full.
    pub async fn drain(&self, timeout: Duration) -> Drained {
        let Some(stream) = self.stream.get() else {
            // Nowhere to write yet: only an end is news.
            return match self.lock().end {
                Some(End::Now) => Drained::Abort,
                Some(End::AfterDrain) => Drained::Close,
                None => Drained::Idle,
            };
        };
        loop {
            {
                let mut st = self.lock();
                match st.end {
                    Some(End::Now) => return Drained::Abort,
                    Some(End::AfterDrain) if st.idle() => return Drained::Close,
                    _ if st.idle() => return Drained::Idle,
                    _ => {}
                }
                match self.write_some(&mut st) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(()) => {
                        st.end = Some(End::Now);
                        return Drained::Abort;
                    }
                }
            }
            // Woken early when the router ends the connection meanwhile.
            let ready = async {
                tokio::select! {
                    r = stream.writable() => r,
                    () = self.wake.notified() => Ok(()),
                }
            };
            match tokio::time::timeout(timeout, ready).await {
                Ok(Ok(())) => {}
                _ => {
                    self.lock().end = Some(End::Now);
                    return Drained::Abort;
                }
            }
        }
    }

    /// One vectored write of the head of the queue. `Ok(true)`: progress
    /// made, `Ok(false)`: the socket is full.
    fn write_some(&self, st: &mut State) -> Result<bool, ()> {
        let Some(stream) = self.stream.get() else {
            return Ok(false);
        };
        if st.partial.is_none() {
            let next = st.queue.pop_front().or_else(|| st.bulk.pop_front());
            st.partial = next.map(|l| (l, 0));
        }
        let written = {
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(DRAIN_SLICES);
            if let Some((line, at)) = &st.partial {
                slices.push(IoSlice::new(&line[*at..]));
            }
            // Bulk lines go one at a time, after every message.
            slices.extend(
                st.queue
                    .iter()
                    .take(DRAIN_SLICES - 1)
                    .map(|l| IoSlice::new(l)),
            );
            match stream.try_write_vectored(&slices) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(_) => return Err(()),
            }
        };
        let mut left = written;
        if let Some((line, at)) = st.partial.take() {
            let rest = line.len() - at;
            if left < rest {
                st.partial = Some((line, at + left));
                return Ok(written > 0);
            }
            left -= rest;
        }
        while left > 0 {
            let Some(line) = st.queue.pop_front() else {
                break;
            };
            if left < line.len() {
                st.partial = Some((line, left));
                break;
            }
            left -= line.len();
        }
        Ok(written > 0)
    }
}

/// What the engine task hands a writer task, in order.
pub enum Job {
    /// A new connection (before any line for it).
    Register(Arc<Outbox>),
    /// A line for one session.
    One(SessionId, Line),
    /// A line for many sessions, the same list handed to every writer: each
    /// writes those it owns.
    Many(Arc<[SessionId]>, Line),
    /// A file chunk for one session.
    Bulk(SessionId, Line),
    /// Close after what is queued.
    Close(SessionId),
    /// The session is gone.
    Forget(SessionId),
}

/// The engine task's end of the writer tasks.
pub struct Writers {
    txs: Vec<mpsc::Sender<Vec<Job>>>,
    batches: Vec<Vec<Job>>,
}

impl Writers {
    /// Starts `n` writer tasks (at least one).
    pub fn spawn(n: usize) -> Writers {
        let n = n.max(1);
        let mut txs = Vec::with_capacity(n);
        for index in 0..n {
            let (tx, rx) = mpsc::channel(WRITER_QUEUE);
            tokio::spawn(writer(index, n, rx));
            txs.push(tx);
        }
        Writers {
            batches: (0..n).map(|_| Vec::new()).collect(),
            txs,
        }
    }

    fn of(&self, session: SessionId) -> usize {
        (session % self.txs.len() as u64) as usize
    }

    /// Adds a job to the batch of the writer that owns `session`.
    pub fn to(&mut self, session: SessionId, job: Job) {
        let i = self.of(session);
        self.batches[i].push(job);
    }

    /// Adds `line` for every one of `sessions`.
    pub fn to_many(&mut self, sessions: Vec<SessionId>, line: Line) {
        match sessions.as_slice() {
            [] => {}
            [one] => self.to(*one, Job::One(*one, line)),
            _ => {
                let sessions: Arc<[SessionId]> = sessions.into();
                for b in &mut self.batches {
                    b.push(Job::Many(sessions.clone(), line.clone()));
                }
            }
        }
    }

    /// Hands every writer its batch, waiting only while a writer's queue
    /// is full. `try_send` first: an awaited send also spends the task's
    /// tokio budget, and a spent budget would send the engine task to the
    /// back of the run queue, behind fan-outs, in the middle of a command
    /// (the 2 to 3 ms outliers of floor grants at any room size).
    pub async fn flush(&mut self) {
        for (tx, batch) in self.txs.iter().zip(self.batches.iter_mut()) {
            if batch.is_empty() {
                continue;
            }
            match tx.try_send(std::mem::take(batch)) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(batch)) => {
                    let _ = tx.send(batch).await;
                }
            }
        }
    }
}

impl Job {
    /// Whether this job is still to write to, or change, `session`'s
    /// connection (`first_done`: its first session's line went ahead).
    fn touches(&self, session: SessionId, first_done: bool) -> bool {
        match self {
            Job::Register(o) => o.session() == session,
            Job::One(s, _) | Job::Bulk(s, _) | Job::Close(s) | Job::Forget(s) => *s == session,
            Job::Many(v, _) => v[usize::from(first_done).min(v.len())..].contains(&session),
        }
    }
}

/// Jobs waiting in a writer beyond which no line is written ahead.
const EXPRESS_DEPTH: usize = 4;

/// One writer task's state.
struct Writer {
    index: usize,
    writers: usize,
    owned: rustc_hash::FxHashMap<SessionId, Arc<Outbox>>,
    /// Jobs not started yet, in order, each with whether its first
    /// session's line was already written ahead.
    pending: VecDeque<(Job, bool)>,
}

impl Writer {
    fn mine(&self, s: SessionId) -> bool {
        (s % self.writers as u64) as usize == self.index
    }

    /// Takes a batch, writing ahead the line of each job's first session
    /// (the member whose command caused it: the engine puts it first) when
    /// nothing earlier is still to be written to that session: `remaining`,
    /// the rest of the fan-out being written, and the jobs waiting. A
    /// floor grant then reaches its requester while the writer is still
    /// busy telling ten thousand members of the release before it.
    fn admit(&mut self, batch: Vec<Job>, remaining: &[SessionId]) {
        for job in batch {
            let first = match &job {
                Job::One(s, line) => Some((*s, line.clone())),
                Job::Many(v, line) => v.first().map(|s| (*s, line.clone())),
                _ => None,
            };
            let ahead = first.and_then(|(s, line)| {
                let clear = self.mine(s)
                    && self.pending.len() <= EXPRESS_DEPTH
                    && !remaining.contains(&s)
                    && !self.pending.iter().any(|(j, done)| j.touches(s, *done));
                let o = self.owned.get(&s).filter(|_| clear)?;
                o.push(line);
                Some(())
            });
            match (job, ahead) {
                (Job::One(..), Some(())) => {}
                (job, ahead) => self.pending.push_back((job, ahead.is_some())),
            }
        }
    }

    /// Carries out a job that writes at most one socket.
    fn run_one(&mut self, job: Job) {
        match job {
            Job::Register(o) => {
                self.owned.insert(o.session(), o);
            }
            Job::One(s, line) => {
                if let Some(o) = self.owned.get(&s) {
                    o.push(line);
                }
            }
            Job::Bulk(s, line) => {
                if let Some(o) = self.owned.get(&s) {
                    o.push_bulk(line);
                }
            }
            Job::Close(s) => {
                if let Some(o) = self.owned.remove(&s) {
                    o.close();
                }
            }
            Job::Forget(s) => {
                self.owned.remove(&s);
            }
            Job::Many(..) => {}
        }
    }
}

async fn writer(index: usize, writers: usize, mut rx: mpsc::Receiver<Vec<Job>>) {
    let mut w = Writer {
        index,
        writers,
        owned: Default::default(),
        pending: VecDeque::new(),
    };
    let mut writes = 0usize;
    loop {
        if w.pending.is_empty() {
            match rx.recv().await {
                Some(batch) => w.admit(batch, &[]),
                None => return,
            }
        }
        while let Ok(batch) = rx.try_recv() {
            w.admit(batch, &[]);
        }
        let Some((job, first_done)) = w.pending.pop_front() else {
            continue;
        };
        let Job::Many(sessions, line) = job else {
            w.run_one(job);
            writes += 1;
            if writes >= WRITES_PER_TURN {
                writes = 0;
                tokio::task::yield_now().await;
            }
            continue;
        };
        let mut at = usize::from(first_done);
        while at < sessions.len() {
            let end = (at + WRITES_PER_TURN).min(sessions.len());
            for &s in &sessions[at..end] {
                if w.mine(s)
                    && let Some(o) = w.owned.get(&s)
                {
                    o.push(line.clone());
                }
            }
            at = end;
            if at < sessions.len() {
                // Let other tasks run (the engine among them), then take
                // what came meanwhile.
                tokio::task::yield_now().await;
                while let Ok(batch) = rx.try_recv() {
                    w.admit(batch, &sessions[at..]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A connected pair: the router's end (in an outbox) and the client's.
    async fn pair(session: SessionId) -> (Arc<Outbox>, TcpStream) {
        let Ok(l) = TcpListener::bind("127.0.0.1:0").await else {
            panic!("bind")
        };
        let Ok(addr) = l.local_addr() else { panic!() };
        let (Ok(client), Ok((server, _))) = tokio::join!(TcpStream::connect(addr), l.accept())
        else {
            panic!("connect")
        };
        (
            Outbox::new(session, Arc::new(ControlStream::Tcp(server))),
            client,
        )
    }

    /// What a connection task does with its outbox.
    fn drain_task(o: Arc<Outbox>) -> tokio::task::JoinHandle<Drained> {
        tokio::spawn(async move {
            loop {
                o.woken().await;
                match o.drain(WRITE_TIMEOUT).await {
                    Drained::Idle => {}
                    other => {
                        o.finish();
                        return other;
                    }
                }
            }
        })
    }

    fn line(i: usize, len: usize) -> Line {
        let mut v = format!("{i:08} ").into_bytes();
        v.resize(len - 1, b'a' + (i % 26) as u8);
        v.push(b'\n');
        v.into()
    }

    async fn read_exactly(client: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        let r = tokio::time::timeout(Duration::from_secs(20), client.read_exact(&mut got)).await;
        assert!(matches!(r, Ok(Ok(_))), "read {r:?}");
        got
    }

    /// Lines far larger than the socket's buffer, pushed faster than the
    /// client reads: the client gets each line whole, in order, and the
    /// close comes after the last one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_lines_arrive_whole_and_in_order_then_the_close() {
        let (o, mut client) = pair(7).await;
        let task = drain_task(o.clone());
        let lines: Vec<Line> = (0..200)
            .map(|i| line(i, 1 + (i * 7919) % 300_000))
            .collect();
        let expected: Vec<u8> = lines.iter().flat_map(|l| l.iter().copied()).collect();
        for l in &lines {
            o.push(l.clone());
        }
        o.close();
        let got = read_exactly(&mut client, expected.len()).await;
        assert!(got == expected, "bytes differ");
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(20), client.read_to_end(&mut rest)).await;
        assert!(
            matches!(r, Ok(Ok(0))),
            "after the close: {r:?} {}",
            rest.len()
        );
        assert_eq!(task.await.ok(), Some(Drained::Close));
        // Lines after the end are dropped, not written.
        o.push(line(1, 10));
    }

    /// A client that stops reading is ended once CONNECTION_QUEUE lines
    /// wait, and pushing to it never blocks the writer.
    #[tokio::test]
    async fn a_client_that_stops_reading_is_ended_without_blocking_the_writer() {
        let (o, _client) = pair(8).await;
        let task = drain_task(o.clone());
        let big = line(0, 64 * 1024);
        let mut pushed = 0;
        while !task.is_finished() && pushed < 100_000 {
            o.push(big.clone());
            pushed += 1;
            tokio::task::yield_now().await;
        }
        assert_eq!(task.await.ok(), Some(Drained::Abort));
        assert!(
            pushed > CONNECTION_QUEUE,
            "ended after {pushed} lines, before its queue was full"
        );
    }

    /// File chunks wait behind every message; beyond BULK_QUEUE they are
    /// dropped and counted.
    #[tokio::test]
    async fn bulk_waits_behind_messages_and_overflows_by_dropping() {
        let (o, mut client) = pair(9).await;
        // Fill the socket so everything after queues.
        let filler = line(0, 8 << 20);
        o.push(filler.clone());
        let chunk = line(1, 100);
        let before = BULK_DROPPED.load(Ordering::Relaxed);
        for _ in 0..BULK_QUEUE + 5 {
            o.push_bulk(chunk.clone());
        }
        assert!(BULK_DROPPED.load(Ordering::Relaxed) >= before + 5);
        let msg = line(2, 100);
        o.push(msg.clone());
        let task = drain_task(o.clone());
        let got = read_exactly(&mut client, filler.len() + msg.len() + chunk.len()).await;
        assert!(got[..filler.len()] == filler[..]);
        assert!(
            got[filler.len()..filler.len() + msg.len()] == msg[..],
            "message after bulk"
        );
        assert!(got[filler.len() + msg.len()..] == chunk[..]);
        task.abort();
    }

    /// A writer task writes a line for many sessions to those it owns, in
    /// order with its lines for one, and closes after them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writers_fan_a_line_out_to_every_session_in_order() {
        let mut writers = Writers::spawn(3);
        let mut clients = Vec::new();
        let mut tasks = Vec::new();
        for s in 1..=10u64 {
            let (o, c) = pair(s).await;
            tasks.push(drain_task(o.clone()));
            writers.to(s, Job::Register(o));
            clients.push(c);
        }
        let all: Vec<SessionId> = (1..=10).collect();
        writers.to_many(all.clone(), Arc::from(&b"one\n"[..]));
        for &s in &all {
            writers.to(s, Job::One(s, Arc::from(format!("to {s}\n").as_bytes())));
        }
        writers.to_many(all.clone(), Arc::from(&b"two\n"[..]));
        for &s in &all {
            writers.to(s, Job::Close(s));
        }
        writers.flush().await;
        for (i, c) in clients.iter_mut().enumerate() {
            let mut got = String::new();
            let r = tokio::time::timeout(Duration::from_secs(20), c.read_to_string(&mut got)).await;
            assert!(matches!(r, Ok(Ok(_))));
            assert_eq!(got, format!("one\nto {}\ntwo\n", i + 1));
        }
        for t in tasks {
            assert_eq!(t.await.ok(), Some(Drained::Close));
        }
    }

    /// Lines written ahead of a fan-out in progress never overtake an
    /// earlier line to the same session: random jobs, batches handed over
    /// while writers are in the middle of long fan-outs, every session's
    /// lines in the order the engine gave them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lines_written_ahead_keep_each_sessions_order() {
        use rand::{Rng, SeedableRng, seq::SliceRandom};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut writers = Writers::spawn(2);
        let ids: Vec<SessionId> = (1..=12).collect();
        let mut clients = Vec::new();
        let mut tasks = Vec::new();
        for &s in &ids {
            let (o, c) = pair(s).await;
            tasks.push(drain_task(o.clone()));
            writers.to(s, Job::Register(o));
            clients.push(c);
        }
        let mut expected: HashMap<SessionId, String> = HashMap::new();
        for k in 0..300 {
            let text = format!("j{k}\n");
            let line: Line = Arc::from(text.as_bytes());
            if rng.random_bool(0.3) {
                let s = ids[rng.random_range(0..ids.len())];
                writers.to(s, Job::One(s, line));
                expected.entry(s).or_default().push_str(&text);
            } else {
                let mut to: Vec<SessionId> = ids
                    .iter()
                    .copied()
                    .filter(|_| rng.random_bool(0.7))
                    .collect();
                to.shuffle(&mut rng);
                for s in &to {
                    expected.entry(*s).or_default().push_str(&text);
                }
                // Sessions nobody registered make the fan-out long.
                to.extend(5000..5000 + 100 * WRITES_PER_TURN as u64);
                writers.to_many(to, line);
            }
            writers.flush().await;
            tokio::task::yield_now().await;
        }
        for &s in &ids {
            writers.to(s, Job::Close(s));
        }
        writers.flush().await;
        for (c, s) in clients.iter_mut().zip(&ids) {
            let mut got = String::new();
            let r = tokio::time::timeout(Duration::from_secs(20), c.read_to_string(&mut got)).await;
            assert!(matches!(r, Ok(Ok(_))));
            assert_eq!(got, expected.remove(s).unwrap_or_default(), "session {s}");
        }
        for t in tasks {
            assert_eq!(t.await.ok(), Some(Drained::Close));
        }
    }

    /// What `admit` writes ahead and what it leaves in order.
    #[tokio::test]
    async fn a_line_is_written_ahead_only_when_nothing_earlier_waits_for_its_session() {
        let (o1, c1) = pair(1).await;
        let (o2, mut c2) = pair(2).await;
        let mut w = Writer {
            index: 0,
            writers: 1,
            owned: [(1, o1), (2, o2)].into_iter().collect(),
            pending: VecDeque::new(),
        };
        let l = |t: &str| -> Line { Arc::from(t.as_bytes()) };
        // Session 1 still has the fan-out in progress to come: not ahead.
        w.admit(vec![Job::Many(Arc::from(vec![1, 2]), l("a\n"))], &[1, 7]);
        assert!(matches!(w.pending.back(), Some((Job::Many(..), false))));
        // Session 2 is clear of it: ahead; session 1 waits behind "a".
        w.pending.clear();
        w.admit(vec![Job::Many(Arc::from(vec![2, 1]), l("b\n"))], &[1, 7]);
        assert!(matches!(w.pending.back(), Some((Job::Many(..), true))));
        assert_eq!(read_exactly(&mut c2, 2).await, b"b\n");
        // The line that went ahead does not hold back the next one to 2.
        w.admit(vec![Job::Many(Arc::from(vec![2, 1]), l("b2\n"))], &[]);
        assert!(matches!(w.pending.back(), Some((Job::Many(..), true))));
        assert_eq!(read_exactly(&mut c2, 3).await, b"b2\n");
        w.pending.pop_back();
        // The waiting fan-out is still to write to 1, not to 2.
        w.admit(vec![Job::One(2, l("c\n")), Job::One(1, l("d\n"))], &[]);
        assert_eq!(read_exactly(&mut c2, 2).await, b"c\n");
        assert_eq!(w.pending.len(), 2);
        assert!(matches!(w.pending.back(), Some((Job::One(1, _), false))));
        // A session the fan-outs do not name is written at once.
        let (o3, mut c3) = pair(3).await;
        w.owned.insert(3, o3);
        w.admit(vec![Job::One(3, l("e\n"))], &[]);
        assert_eq!(w.pending.len(), 2);
        assert_eq!(read_exactly(&mut c3, 2).await, b"e\n");
        // Beyond EXPRESS_DEPTH waiting jobs nothing goes ahead.
        for _ in 0..EXPRESS_DEPTH {
            w.admit(vec![Job::Forget(9)], &[]);
        }
        w.admit(vec![Job::One(3, l("f\n"))], &[]);
        assert!(matches!(w.pending.back(), Some((Job::One(3, _), false))));
        let mut buf = [0u8; 8];
        assert!(
            matches!(c1.try_read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock),
            "nothing went ahead to session 1"
        );
    }
}
