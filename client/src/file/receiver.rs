//! The receiving side of a file transfer, sans-IO: reassembles chunks in
//! order, acknowledges cumulatively (a gap makes duplicate
//! acknowledgements, the sender's loss signal), and checks the SHA-256.

use std::collections::BTreeMap;

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Out-of-order chunks kept while waiting for a gap to fill.
pub const MAX_PENDING: usize = 4096;

/// Why a received file is not the one offered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    #[error("chunk {seq}: {message}")]
    BadChunk { seq: u64, message: String },
    #[error("{missing} of {chunks} chunks never arrived")]
    Incomplete { missing: u64, chunks: u64 },
    #[error("SHA-256 mismatch: expected {expected}, got {got}")]
    Checksum { expected: String, got: String },
}

/// One transfer's receiving state.
pub struct FileReceiver {
    size: u64,
    chunk_size: u32,
    chunks: u64,
    sha256: String,
    /// Every chunk before this has been delivered in order.
    next: u64,
    pending: BTreeMap<u64, Vec<u8>>,
    hasher: Sha256,
    duplicates: u64,
}

impl FileReceiver {
    pub fn new(size: u64, chunk_size: u32, sha256: &str) -> Self {
        Self {
            size,
            chunk_size,
            chunks: size.div_ceil(u64::from(chunk_size.max(1))),
            sha256: sha256.to_owned(),
            next: 0,
            pending: BTreeMap::new(),
            hasher: Sha256::new(),
            duplicates: 0,
        }
    }

    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// The cumulative acknowledgement to send now.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    fn expected_len(&self, seq: u64) -> u64 {
        let full = u64::from(self.chunk_size);
        if seq + 1 < self.chunks {
            full
        } else {
            self.size - full * (self.chunks - 1)
        }
    }

    /// Takes one chunk; appends to `out` whatever is now in order. Returns
    /// the acknowledgement to send.
    pub fn on_chunk(
        &mut self,
        seq: u64,
        data: &str,
        out: &mut Vec<u8>,
    ) -> Result<u64, ReceiveError> {
        if seq >= self.chunks {
            return Err(ReceiveError::BadChunk {
                seq,
                message: format!("past the last chunk ({})", self.chunks),
            });
        }
        if seq < self.next || self.pending.contains_key(&seq) {
            self.duplicates += 1;
            return Ok(self.next);
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| ReceiveError::BadChunk {
                seq,
                message: format!("bad base64: {e}"),
            })?;
        if bytes.len() as u64 != self.expected_len(seq) {
            return Err(ReceiveError::BadChunk {
                seq,
                message: format!("{} bytes, expected {}", bytes.len(), self.expected_len(seq)),
            });
        }
        if seq > self.next {
            if self.pending.len() < MAX_PENDING {
                self.pending.insert(seq, bytes);
            }
            return Ok(self.next);
        }
        self.deliver(bytes, out);
        while let Some(b) = self.pending.remove(&self.next) {
            self.deliver(b, out);
        }
        Ok(self.next)
    }

    fn deliver(&mut self, bytes: Vec<u8>, out: &mut Vec<u8>) {
        self.hasher.update(&bytes);
        out.extend_from_slice(&bytes);
        self.next += 1;
    }

    /// After FILE_END: is everything here and is it the file offered?
    pub fn finish(self) -> Result<(), ReceiveError> {
        if self.next < self.chunks {
            return Err(ReceiveError::Incomplete {
                missing: self.chunks - self.next,
                chunks: self.chunks,
            });
        }
        let got = hex(&self.hasher.finalize());
        if got != self.sha256 {
            return Err(ReceiveError::Checksum {
                expected: self.sha256,
                got,
            });
        }
        Ok(())
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
