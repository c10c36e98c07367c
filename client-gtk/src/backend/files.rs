//! Files in meetings, for the desktop client: incoming transfers are taken
//! in chunk by chunk as they arrive (written to `NAME.part` in the
//! downloads folder, checked, renamed); outgoing ones run the client
//! library's Reno sender while every other message still reaches the
//! window.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use client::Session;
use client::file::{DEFAULT_CHUNK, FileReceiver, free_name, send_file};
use proto::control::{ClientMessage, ServerMessage};

use super::{Emitter, Event, Options, Shared, handle_sync, lock};

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
}

impl Files {
    pub(crate) fn new(downloads: PathBuf) -> Self {
        Self {
            downloads,
            incoming: HashMap::new(),
        }
    }

    /// Incoming transfers: offers, chunks, ends, aborts.
    pub(crate) fn on_message(
        &mut self,
        m: &ServerMessage,
        control: &client::Control,
        out: &Emitter,
    ) {
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

    fn refuse(&mut self, id: u64, why: String, control: &client::Control, out: &Emitter) {
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

    /// Sends a file; everything else the router says meanwhile is handled
    /// as usual.
    pub(crate) async fn send(
        &mut self,
        session: &mut Session,
        path: &Path,
        to: Option<&str>,
        out: &Emitter,
        shared: &Shared,
        _opts: &Options,
    ) -> Result<(), String> {
        let control = session.control();
        let report = send_file(
            session,
            path,
            to,
            DEFAULT_CHUNK,
            |p| {
                out.emit(Event::FileProgress {
                    id: p.transfer_id,
                    done: p.acked,
                    total: p.chunks,
                    cwnd: Some(p.cwnd),
                })
            },
            |m| {
                out.server(&m);
                lock(shared).session.apply(&m);
                handle_sync(&m, &control, out, shared, self);
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        out.emit(Event::FileDone {
            id: report.transfer_id,
            result: Ok(None),
        });
        Ok(())
    }
}
