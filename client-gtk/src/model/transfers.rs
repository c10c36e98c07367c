//! Files in a meeting, as the room shows them: each transfer in or out
//! with its progress and how it ended.

use proto::control::ServerMessage;

use super::room::RoomModel;

/// A file on its way, in or out.
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    pub id: u64,
    pub name: String,
    pub outgoing: bool,
    /// The other side: the sender, or the receivers.
    pub peer: String,
    pub done: u64,
    pub total: u64,
    /// Sender: the congestion window, in chunks.
    pub cwnd: Option<f64>,
    pub state: TransferState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferState {
    Running,
    /// Received intact, saved here (or sent and confirmed).
    Done(Option<std::path::PathBuf>),
    Failed(String),
}

impl Transfer {
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            (self.done as f64 / self.total as f64).clamp(0.0, 1.0)
        }
    }

    pub fn label(&self) -> String {
        let dir = if self.outgoing { "to" } else { "from" };
        match &self.state {
            TransferState::Running => format!(
                "{} {dir} {}: {:.0}%{}",
                self.name,
                self.peer,
                self.fraction() * 100.0,
                self.cwnd
                    .map(|c| format!(", window {c:.1}"))
                    .unwrap_or_default()
            ),
            TransferState::Done(_) => format!("{} {dir} {}: done", self.name, self.peer),
            TransferState::Failed(e) => format!("{} {dir} {}: failed ({e})", self.name, self.peer),
        }
    }
}

impl RoomModel {
    /// The file messages of [`RoomModel::apply`]; true if one was.
    pub(super) fn apply_file(&mut self, msg: &ServerMessage) -> bool {
        match msg {
            ServerMessage::FileStarted {
                transfer_id,
                receivers,
                chunks,
                ..
            } => self.sending(*transfer_id, None, receivers, *chunks),
            ServerMessage::FileOffered {
                transfer_id,
                from,
                name,
                chunks,
                ..
            } => {
                self.transfers.insert(
                    *transfer_id,
                    Transfer {
                        id: *transfer_id,
                        name: name.clone(),
                        outgoing: false,
                        peer: from.clone(),
                        done: 0,
                        total: *chunks,
                        cwnd: None,
                        state: TransferState::Running,
                    },
                );
            }
            ServerMessage::FileAck {
                transfer_id,
                next_seq,
            } => {
                if let Some(t) = self.transfers.get_mut(transfer_id) {
                    t.done = t.done.max(*next_seq);
                }
            }
            ServerMessage::FileResult {
                transfer_id,
                nickname,
                ok,
                message,
            } => {
                if let Some(t) = self.transfers.get_mut(transfer_id) {
                    t.state = if *ok {
                        t.done = t.total;
                        TransferState::Done(None)
                    } else {
                        TransferState::Failed(format!(
                            "{nickname}: {}",
                            message.as_deref().unwrap_or("refused")
                        ))
                    };
                }
            }
            ServerMessage::FileAborted {
                transfer_id,
                reason,
            } => {
                if let Some(t) = self.transfers.get_mut(transfer_id) {
                    t.state = TransferState::Failed(reason.clone());
                }
            }
            _ => return false,
        }
        true
    }

    /// A file we offered started: from FILE_STARTED (which has no name)
    /// and from the sending task (which has), in either order.
    pub fn sending(&mut self, id: u64, name: Option<&str>, receivers: &[String], chunks: u64) {
        let t = self.transfers.entry(id).or_insert_with(|| Transfer {
            id,
            name: "file".into(),
            outgoing: true,
            peer: String::new(),
            done: 0,
            total: chunks,
            cwnd: None,
            state: TransferState::Running,
        });
        if let Some(n) = name {
            t.name = n.into();
        }
        t.peer = receivers.join(", ");
        t.total = chunks;
    }

    /// Progress of a transfer (from the file drivers).
    pub fn progress(&mut self, id: u64, done: u64, cwnd: Option<f64>) {
        if let Some(t) = self.transfers.get_mut(&id) {
            t.done = t.done.max(done);
            if cwnd.is_some() {
                t.cwnd = cwnd;
            }
        }
    }

    /// A transfer ended here (received and checked, or failed).
    pub fn finished(&mut self, id: u64, result: Result<Option<std::path::PathBuf>, String>) {
        if let Some(t) = self.transfers.get_mut(&id) {
            t.state = match result {
                Ok(p) => {
                    t.done = t.total;
                    TransferState::Done(p)
                }
                Err(e) => TransferState::Failed(e),
            };
        }
    }
}
