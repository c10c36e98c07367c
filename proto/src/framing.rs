//! Newline framing for the control channel, with no I/O.
//!
//! Bytes go in with [`LineFramer::push`]; complete lines come out of
//! [`LineFramer::next_frame`]. A line longer than the limit never grows the
//! buffer past that limit: the framer reports [`Frame::TooLong`] once and
//! discards everything up to the next newline, so a peer sending 10 MB without
//! a newline costs at most `max_line` bytes of memory.

use std::collections::VecDeque;

/// One item produced by the framer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line without its terminating `\n` (and `\r`, if any).
    Line(Vec<u8>),
    /// A line exceeded the limit; its bytes were discarded.
    TooLong,
}

/// Splits a byte stream into lines of at most `max_line` bytes.
#[derive(Debug)]
pub struct LineFramer {
    /// The current, unterminated line (never longer than `max_line`).
    buf: Vec<u8>,
    max_line: usize,
    /// True while skipping the rest of an oversize line.
    discarding: bool,
    ready: VecDeque<Frame>,
}

impl LineFramer {
    /// A framer accepting lines up to `max_line` bytes (excluding the newline).
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_line,
            discarding: false,
            ready: VecDeque::new(),
        }
    }

    /// The configured line limit.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Feeds bytes read from the socket.
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let chunk = &data[..newline.unwrap_or(data.len())];
            if !self.discarding {
                if self.buf.len() + chunk.len() > self.max_line {
                    self.buf.clear();
                    self.discarding = true;
                    self.ready.push_back(Frame::TooLong);
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            match newline {
                Some(i) => {
                    if !self.discarding {
                        self.finish_line();
                    }
                    self.discarding = false;
                    data = &data[i + 1..];
                }
                None => return,
            }
        }
    }

    fn finish_line(&mut self) {
        let mut line = std::mem::take(&mut self.buf);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        // Blank lines are keep-alive noise, not errors.
        if !line.iter().all(|b| b.is_ascii_whitespace()) {
            self.ready.push_back(Frame::Line(line));
        }
    }

    /// The next complete line or oversize notice, if any.
    pub fn next_frame(&mut self) -> Option<Frame> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(f: &mut LineFramer) -> Vec<Frame> {
        std::iter::from_fn(|| f.next_frame()).collect()
    }

    #[test]
    fn splits_lines_across_pushes() {
        let mut f = LineFramer::new(64);
        f.push(b"{\"a\":1}\n{\"b\"");
        assert_eq!(drain(&mut f), vec![Frame::Line(b"{\"a\":1}".to_vec())]);
        f.push(b":2}\r\n\n  \n");
        assert_eq!(drain(&mut f), vec![Frame::Line(b"{\"b\":2}".to_vec())]);
    }

    #[test]
    fn oversize_line_is_reported_once_and_skipped() {
        let mut f = LineFramer::new(8);
        f.push(b"ok\n");
        for _ in 0..1000 {
            f.push(&[b'x'; 1000]);
            assert!(f.buf.len() <= 8, "buffer grew to {}", f.buf.len());
        }
        f.push(b"xx\nnext\n");
        // An oversize line followed by more lines keeps arrival order.
        f.push(b"yyyyyyyyyyyy\nlast\n");
        assert_eq!(
            drain(&mut f),
            vec![
                Frame::Line(b"ok".to_vec()),
                Frame::TooLong,
                Frame::Line(b"next".to_vec()),
                Frame::TooLong,
                Frame::Line(b"last".to_vec())
            ]
        );
    }

    #[test]
    fn line_of_exactly_the_limit_passes() {
        let mut f = LineFramer::new(4);
        f.push(b"abcd\nabcde\nz\n");
        assert_eq!(
            drain(&mut f),
            vec![
                Frame::Line(b"abcd".to_vec()),
                Frame::TooLong,
                Frame::Line(b"z".to_vec())
            ]
        );
    }
}
