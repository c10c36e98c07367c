//! Files in meetings, for the desktop client: incoming transfers are taken
//! in chunk by chunk as they arrive (written to `NAME.part` in the
//! downloads folder, checked, renamed); each outgoing one is a task of its
//! own running the client library's Reno sender, fed the messages that
//! concern senders, so the session's loop goes on with everything else.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use client::file::{DEFAULT_CHUNK, FileReceiver, concerns_senders, free_name, send_file_reporting};
use client::{Control, Tagged};
use proto::control::{ClientMessage, ServerMessage};
use tokio::sync::mpsc;

use super::{Emitter, Event};

struct Incoming {
    rx: FileReceiver,
    target: PathBuf,
    part: PathBuf,
    file: std::fs::File,
    buf: Vec<u8>,
    last_shown: u64,
}

pub(crate) struct Files {
    downloads: PathBuf,
    incoming: HashMap<u64, Incoming>,
    /// The inboxes of the sending tasks; dropped with the connection,
    /// which ends them.
    senders: Vec<mpsc::UnboundedSender<Tagged>>,
}

impl Files {
    pub(crate) fn new(downloads: PathBuf) -> Self {
        Self {
            downloads,
            incoming: HashMap::new(),
            senders: Vec::new(),
        }
    }

    /// Gives each sending task what may concern it.
    pub(crate) fn give_to_senders(&mut self, t: &Tagged) {
        if concerns_senders(t) {
            self.senders.retain(|s| s.send(t.clone()).is_ok());
        }
    }

    /// Starts sending a file, as a task of its own.
    pub(crate) fn send(
        &mut self,
        control: &Control,
        path: PathBuf,
        to: Option<String>,
        out: &Emitter,
    ) {
        let (tx, mut inbox) = mpsc::unbounded_channel();
        self.senders.push(tx);
        let (control, out) = (control.clone(), out.clone());
        tokio::spawn(async move {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".into());
            let mut started = None;
            let result = send_file_reporting(
                &control,
                &mut inbox,
                &path,
                to.as_deref(),
                DEFAULT_CHUNK,
                |s| {
                    started = Some(s.transfer_id);
                    out.emit(Event::FileStarted {
                        id: s.transfer_id,
                        name: s.name.clone(),
                        receivers: s.receivers.clone(),
                        chunks: s.chunks,
                    });
                },
                |p| {
                    out.emit(Event::FileProgress {
                        id: p.transfer_id,
                        done: p.acked,
                        total: p.chunks,
                        cwnd: Some(p.cwnd),
                    })
                },
            )
            .await;
            match (result, started) {
                (Ok(r), _) => out.emit(Event::FileDone {
                    id: r.transfer_id,
                    result: Ok(None),
                }),
                (Err(e), Some(id)) => out.emit(Event::FileDone {
                    id,
                    result: Err(e.to_string()),
                }),
                (Err(e), None) => out.emit(Event::FileRefused {
                    name,
                    why: e.to_string(),
                }),
            }
        });
    }

    /// Incoming transfers: offers, chunks, ends, aborts.
    pub(crate) fn on_message(&mut self, m: &ServerMessage, control: &Control, out: &Emitter) {
        match m {
            ServerMessage::FileOffered {
                transfer_id,
                name,
                size,
                sha256,
                chunk_size,
                ..
            } => {
                let id = *transfer_id;
                let _ = std::fs::create_dir_all(&self.downloads);
                let target = free_name(&self.downloads, name);
                let part = target.with_extension("part");
                match std::fs::File::create(&part) {
                    Ok(file) => {
                        self.incoming.insert(
                            id,
                            Incoming {
                                rx: FileReceiver::new(*size, *chunk_size, sha256),
                                target,
                                part,
                                file,
                                buf: Vec::new(),
                                last_shown: 0,
                            },
                        );
                    }
                    Err(e) => self.refuse(
                        id,
                        format!("cannot write {}: {e}", part.display()),
                        control,
                        out,
                    ),
                }
            }
            ServerMessage::FileChunk {
                transfer_id,
                seq,
                data,
            } => {
                let id = *transfer_id;
                let Some(inc) = self.incoming.get_mut(&id) else {
                    return;
                };
                inc.buf.clear();
                let res = inc
                    .rx
                    .on_chunk(*seq, data, &mut inc.buf)
                    .map_err(|e| e.to_string())
                    .and_then(|next| {
                        inc.file
                            .write_all(&inc.buf)
                            .map(|()| next)
                            .map_err(|e| e.to_string())
                    });
                match res {
                    Ok(next_seq) => {
                        let _ = control.try_send(ClientMessage::FileAck {
                            transfer_id: id,
                            next_seq,
                        });
                        // Progress at most every 1% (or so) of the file.
                        let step = (inc.rx.chunks() / 100).max(1);
                        if next_seq >= inc.last_shown + step || next_seq == inc.rx.chunks() {
                            inc.last_shown = next_seq;
                            out.emit(Event::FileProgress {
                                id,
                                done: next_seq,
                                total: inc.rx.chunks(),
                                cwnd: None,
                            });
                        }
                    }
                    Err(e) => self.refuse(id, e, control, out),
                }
            }
            ServerMessage::FileEnd { transfer_id } => {
                let id = *transfer_id;
                let Some(mut inc) = self.incoming.remove(&id) else {
                    return;
                };
                let verdict = inc
                    .file
                    .flush()
                    .map_err(|e| e.to_string())
                    .and_then(|()| inc.rx.finish().map_err(|e| e.to_string()))
                    .and_then(|()| {
                        std::fs::rename(&inc.part, &inc.target).map_err(|e| e.to_string())
                    });
                if verdict.is_err() {
                    let _ = std::fs::remove_file(&inc.part);
                }
                let _ = control.try_send(ClientMessage::FileResult {
                    transfer_id: id,
                    ok: verdict.is_ok(),
                    message: verdict.as_ref().err().cloned(),
                });
                out.emit(Event::FileDone {
                    id,
                    result: verdict.map(|()| Some(inc.target)),
                });
            }
            ServerMessage::FileAborted { transfer_id, .. } => {
                if let Some(inc) = self.incoming.remove(transfer_id) {
                    let _ = std::fs::remove_file(&inc.part);
                }
            }
            _ => {}
        }
    }

    fn refuse(&mut self, id: u64, why: String, control: &Control, out: &Emitter) {
        if let Some(inc) = self.incoming.remove(&id) {
            let _ = std::fs::remove_file(&inc.part);
        }
        let _ = control.try_send(ClientMessage::FileResult {
            transfer_id: id,
            ok: false,
            message: Some(why.clone()),
        });
        out.emit(Event::FileDone {
            id,
            result: Err(why),
        });
    }
}
