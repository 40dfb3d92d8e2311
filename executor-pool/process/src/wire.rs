//! What parent and worker say to each other over the socket pair between them: frames of
//! a little-endian `u32` length and a postcard-encoded message.
//!
//! The worker (`worker.rs`) reads and writes with blocking calls: it does one thing at a
//! time. The parent's supervisor (`supervisor.rs`) never blocks: it keeps a read buffer and
//! a write buffer per worker, and [`Frames`] cuts whole messages out of what has arrived.

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The largest frame either side accepts. A length beyond it is a corrupt stream (or a
/// payload that belongs in a memory file), never an allocation of that size.
pub(crate) const MAX_FRAME: usize = 1 << 30;

/// From the parent to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Run the function registered under `key` with these encoded arguments.
    Call { id: u64, key: String, args: Vec<u8> },
}

/// From a worker to the parent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// The worker has started and waits for calls.
    Ready,
    /// Call `id` ended.
    Done { id: u64, outcome: Outcome },
}

/// How a call ended in the worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The encoded result.
    Value(Vec<u8>),
    /// The function panicked (the worker lives on).
    Panicked { message: String, location: String },
    /// No function is registered under the key (a different binary?).
    UnknownFunction,
    /// The arguments could not be decoded.
    Arguments(String),
    /// The result could not be encoded.
    Result(String),
}

/// Encodes `message` as one frame, appended to `out`.
pub(crate) fn encode<T: Serialize>(message: &T, out: &mut Vec<u8>) -> io::Result<()> {
    let body = postcard::to_allocvec(message).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::other(format!(
            "a message of {} bytes is over the {MAX_FRAME}-byte frame limit",
            body.len()
        )));
    }
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Reads one frame, blocking (the worker's side). `Ok(None)` at a clean end of stream.
pub(crate) fn read_blocking<T: DeserializeOwned>(from: &mut impl Read) -> io::Result<Option<T>> {
    let mut len = [0; 4];
    match from.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::other(format!(
            "a frame of {len} bytes announced"
        )));
    }
    let mut body = vec![0; len];
    from.read_exact(&mut body)?;
    postcard::from_bytes(&body)
        .map(Some)
        .map_err(io::Error::other)
}

/// Writes one frame, blocking (the worker's side).
pub(crate) fn write_blocking<T: Serialize>(to: &mut impl Write, message: &T) -> io::Result<()> {
    let mut frame = Vec::new();
    encode(message, &mut frame)?;
    to.write_all(&frame)?;
    to.flush()
}

/// The bytes received from one worker so far, cut into frames as they complete.
#[derive(Default)]
pub(crate) struct Frames {
    buffer: Vec<u8>,
}

impl Frames {
    /// Appends what a read returned.
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete message, if one has arrived.
    pub(crate) fn next<T: DeserializeOwned>(&mut self) -> io::Result<Option<T>> {
        let Some(len) = self.buffer.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(len.try_into().expect("four bytes")) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::other(format!(
                "a frame of {len} bytes announced"
            )));
        }
        if self.buffer.len() < 4 + len {
            return Ok(None);
        }
        let message = postcard::from_bytes(&self.buffer[4..4 + len]).map_err(io::Error::other);
        self.buffer.drain(..4 + len);
        message.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cut_out_of_a_stream_delivered_a_byte_at_a_time_come_back_whole() {
        let mut stream = Vec::new();
        for id in 0..3 {
            let message = FromWorker::Done {
                id,
                outcome: Outcome::Value(vec![id as u8; 300]),
            };
            encode(&message, &mut stream).unwrap();
        }
        let mut frames = Frames::default();
        let mut ids = Vec::new();
        for byte in &stream {
            frames.extend(std::slice::from_ref(byte));
            while let Some(FromWorker::Done { id, outcome }) = frames.next().unwrap() {
                assert!(matches!(outcome, Outcome::Value(v) if v == vec![id as u8; 300]));
                ids.push(id);
            }
        }
        assert_eq!(ids, [0, 1, 2]);
    }

    #[test]
    fn a_length_over_the_limit_is_an_error_not_an_allocation() {
        let mut frames = Frames::default();
        frames.extend(&u32::MAX.to_le_bytes());
        assert!(frames.next::<FromWorker>().is_err());
    }
}
