//! What parent and worker say to each other over the socket pair between them: frames of
//! a little-endian `u32` length and a postcard-encoded message.
//!
//! The worker (`worker.rs`) reads and writes with blocking calls: it does one thing at a
//! time. The parent's supervisor (`supervisor.rs`) never blocks: it keeps a read buffer and
//! a write buffer per worker, and [`Frames`] cuts whole messages out of what has arrived.
//! A large argument or result is a [`Payload::InFile`]: its bytes are in a shared memory
//! region whose descriptor arrives with the frame (`payload.rs`).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::payload::{self, Encoded, Views};

/// How long a worker looks for its next call before it sleeps (see `Blocking::read`).
const SPIN: Duration = Duration::from_micros(200);

/// The largest frame either side accepts. A length beyond it is a corrupt stream (or a
/// payload that belongs in a memory file), never an allocation of that size.
pub(crate) const MAX_FRAME: usize = 1 << 30;

/// From the parent to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Run the function registered under `key` with these encoded arguments.
    Call { id: u64, key: String, args: Payload },
}

/// From a worker to the parent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// The worker has started and waits for calls.
    Ready,
    /// The worker could not start (its initializer failed): why. It exits next.
    StartFailed(String),
    /// Call `id` ended.
    Done { id: u64, outcome: Outcome },
}

/// How a call ended in the worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The encoded result.
    Value(Payload),
    /// The function panicked (the worker lives on).
    Panicked { message: String, location: String },
    /// No function is registered under the key (a different binary?).
    UnknownFunction,
    /// The arguments could not be decoded.
    Arguments(String),
    /// The result could not be encoded.
    Result(String),
}

/// Encoded bytes: in the frame, or in a region whose file is sent with it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Payload {
    /// In the frame, as one byte string (not a sequence of numbers, which serde would
    /// encode byte by byte).
    Inline(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The first `len` bytes of the region sent with the frame; lent under `loan` (the
    /// receiver gives it back when done) unless that is 0.
    InFile { len: u64, loan: u64 },
}

impl Payload {
    /// `encoded` as a payload, with the region that must go with its frame if it is in
    /// one; a region of ours that `lend` is lent to the other side (`Lease::lend`).
    pub(crate) fn of(encoded: &mut Encoded, lend: bool) -> (Payload, Option<BorrowedFd<'_>>) {
        match encoded {
            Encoded::Region(lease) => {
                let loan = if lend { lease.lend() } else { 0 };
                let len = lease.len() as u64;
                (Payload::InFile { len, loan }, Some(lease.fd()))
            }
            other => (Payload::Inline(other.bytes().to_vec()), None),
        }
    }

    /// The bytes, in the next received region if they are in one (mapped through
    /// `views`).
    pub(crate) fn open(
        self,
        fds: &mut VecDeque<OwnedFd>,
        views: &mut Views,
    ) -> io::Result<Encoded> {
        match self {
            Payload::Inline(bytes) => Ok(Encoded::Inline(bytes)),
            Payload::InFile { len, loan } => {
                let fd = fds
                    .pop_front()
                    .ok_or_else(|| io::Error::other("a payload file announced, none received"))?;
                let loan = (loan != 0).then_some(loan);
                Ok(Encoded::Lent(views.open(fd, len, loan)?))
            }
        }
    }
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

/// The worker's side of its socket: blocking, one message at a time.
pub(crate) struct Blocking<S> {
    socket: S,
    frames: Frames,
    /// Memory files received, in order, for the `InFile` payloads still to be read.
    pub(crate) fds: VecDeque<OwnedFd>,
}

impl<S: AsFd> Blocking<S> {
    pub(crate) fn new(socket: S) -> Self {
        Blocking {
            socket,
            frames: Frames::default(),
            fds: VecDeque::new(),
        }
    }

    /// The next message; `Ok(None)` at a clean end of stream. Right after a call, the next
    /// one is often microseconds away: it looks without sleeping for `SPIN` first, which
    /// spares the call a wake-up of this process.
    pub(crate) fn read<T: DeserializeOwned>(&mut self) -> io::Result<Option<T>> {
        let mut buffer = [0; 16 * 1024];
        let spin_until = Instant::now() + SPIN;
        loop {
            if let Some(message) = self.frames.next()? {
                return Ok(Some(message));
            }
            let received = if Instant::now() < spin_until {
                match payload::try_recv(&self.socket, &mut buffer, &mut self.fds) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Yield, not spin: on one CPU, the parent needs it to send.
                        std::thread::yield_now();
                        continue;
                    }
                    received => received,
                }
            } else {
                payload::recv(&self.socket, &mut buffer, &mut self.fds)
            };
            match received {
                Ok(0) => return Ok(None),
                Ok(read) => self.frames.extend(&buffer[..read]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes one message, with the memory file of its payload if it has one.
    pub(crate) fn write<T: Serialize>(
        &mut self,
        message: &T,
        file: Option<BorrowedFd<'_>>,
    ) -> io::Result<()> {
        let mut frame = Vec::new();
        encode(message, &mut frame)?;
        let mut fd = file;
        let mut sent = 0;
        while sent < frame.len() {
            match payload::send(&self.socket, &frame[sent..], fd) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    sent += written;
                    fd = None; // it went with the first byte
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
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
                outcome: Outcome::Value(Payload::Inline(vec![id as u8; 300])),
            };
            encode(&message, &mut stream).unwrap();
        }
        let mut frames = Frames::default();
        let mut ids = Vec::new();
        for byte in &stream {
            frames.extend(std::slice::from_ref(byte));
            while let Some(FromWorker::Done { id, outcome }) = frames.next().unwrap() {
                let Outcome::Value(Payload::Inline(value)) = outcome else {
                    panic!("not an inline value");
                };
                assert_eq!(value, vec![id as u8; 300]);
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
