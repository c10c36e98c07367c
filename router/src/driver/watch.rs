//! Fans room events out to `WatchRoom` streams.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast;

use super::engine_task::unix_ms_now;
use crate::engine::OpError;
use crate::events::{RoomEvent, RoomEventKind, RoomSnapshot};

/// A room event as watchers receive it, stamped with wall-clock time.
#[derive(Debug)]
pub struct WatchItem {
    pub event: RoomEvent,
    /// Milliseconds since the Unix epoch when the router dispatched it.
    pub unix_ms: u64,
}

/// A new watcher: the room's state, then every event after it.
pub struct Subscription {
    pub snapshot: RoomSnapshot,
    pub events: broadcast::Receiver<Arc<WatchItem>>,
}

/// Why a watch could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Op(#[from] OpError),
    #[error("room `{room}` already has {max} watchers, the most it takes")]
    TooMany { room: String, max: usize },
}

/// Fans room events out to watchers: one bounded broadcast buffer per
/// watched room. Sending never waits, so a watcher that stops reading only
/// loses its own place (it sees `Lagged` and is ended), never stalls the
/// engine.
pub struct WatchHub {
    rooms: HashMap<String, broadcast::Sender<Arc<WatchItem>>>,
    max_per_room: usize,
    buffer: usize,
}

impl WatchHub {
    pub fn new(max_per_room: usize, buffer: usize) -> Self {
        Self {
            rooms: HashMap::new(),
            max_per_room,
            buffer: buffer.max(1),
        }
    }

    pub(crate) fn subscribe(
        &mut self,
        room: &str,
    ) -> Result<broadcast::Receiver<Arc<WatchItem>>, WatchError> {
        let tx = self
            .rooms
            .entry(room.to_owned())
            .or_insert_with(|| broadcast::channel(self.buffer).0);
        if tx.receiver_count() >= self.max_per_room {
            return Err(WatchError::TooMany {
                room: room.to_owned(),
                max: self.max_per_room,
            });
        }
        Ok(tx.subscribe())
    }

    pub(crate) fn publish(&mut self, event: &RoomEvent) {
        let closed = matches!(event.kind, RoomEventKind::Closed { .. });
        if let Some(tx) = self.rooms.get(&event.room) {
            if tx.receiver_count() > 0 {
                let _ = tx.send(Arc::new(WatchItem {
                    event: event.clone(),
                    unix_ms: unix_ms_now(),
                }));
            } else {
                self.rooms.remove(&event.room);
            }
        }
        if closed {
            // Dropping the sender ends every stream once it has read this.
            self.rooms.remove(&event.room);
        }
    }
}
