//! Large payloads: arguments or results over [`INLINE_MAX`] bytes travel in a shared memory
//! file (`memfd`), not through the socket, which would take them in socket-buffer-sized
//! pieces, each a wake-up of the other side. The frame announces the length; the file's
//! descriptor comes with it (`SCM_RIGHTS`).
//!
//! What makes a 16 MiB round trip cost little more than copying its bytes is reuse, since
//! a fresh file costs a page fault per 4 KiB on each side:
//! - The sender encodes straight into a *region* ([`Regions`]): a memory file it keeps
//!   mapped and reuses, so its pages are already there. Encoding starts in a plain buffer
//!   and moves to a region only when it passes [`INLINE_MAX`] ([`Spill`]).
//! - The receiver keeps its mappings of the sender's regions ([`Views`], by the file's
//!   identity): the same region arriving again is decoded where it is, with no call to
//!   `mmap` and no fault. Each side copies the bytes once: into the region, and out of it
//!   into the decoded value.
//!
//! Who may write a region, and when, is the protocol's: the sender holds it from encoding
//! until the receiver is done with it, and the receiver only reads. The parent's argument
//! regions go back to its pool when the call ends (answered, or its worker reaped: a
//! dying worker may still read). A worker's result region is *lent*: its first word holds
//! the number of the loan, which the parent clears once it has decoded the result
//! ([`Lent`]); the worker reuses only regions whose word is clear. Both sides are this
//! binary. A region is sealed against shrinking, so a mapping never outlives its pages (a
//! read past a file's end would be `SIGBUS`, not an error), and the receiver checks the
//! announced length against the file's.
//!
//! Every send and receive on the socket between parent and worker goes through [`send`]
//! and [`recv`]: they carry descriptors, and never raise `SIGPIPE` (a dead worker's socket
//! is an error to handle, not a signal that ends the parent).
//!
//! The parts: `map.rs` (a mapping of a region, and its loan word), `regions.rs` (the
//! sender's regions and leases), `views.rs` (the receiver's mappings and loans),
//! `encode.rs` (postcard into a region).

mod encode;
mod map;
mod regions;
mod views;

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

pub(crate) use encode::{Encoded, encode, encoded_from};
pub(crate) use regions::Regions;
pub(crate) use views::Views;

/// socket (measured by the `compare` benchmark's large-payload row).
pub(crate) const INLINE_MAX: usize = 64 * 1024;

/// Sends `bytes` on `socket`, the first byte carrying `fd` if one is given. Returns how
/// many bytes went; the descriptor went with them if that is more than zero.
pub(crate) fn send(
    socket: impl AsFd,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
    if !fds.is_empty() {
        control.push(SendAncillaryMessage::ScmRights(&fds));
    }
    let sent = rustix::net::sendmsg(
        socket,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    Ok(sent)
}

/// Receives into `buffer`, keeping every descriptor that came along, in order, in `fds`.
/// Returns how many bytes arrived (0: the other side closed the socket).
pub(crate) fn recv(
    socket: impl AsFd,
    buffer: &mut [u8],
    fds: &mut VecDeque<OwnedFd>,
) -> io::Result<usize> {
    recv_with(socket, buffer, fds, RecvFlags::empty())
}

/// [`recv`] that never blocks: `WouldBlock` when nothing has arrived.
pub(crate) fn try_recv(
    socket: impl AsFd,
    buffer: &mut [u8],
    fds: &mut VecDeque<OwnedFd>,
) -> io::Result<usize> {
    recv_with(socket, buffer, fds, RecvFlags::DONTWAIT)
}

fn recv_with(
    socket: impl AsFd,
    buffer: &mut [u8],
    fds: &mut VecDeque<OwnedFd>,
    flags: RecvFlags,
) -> io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(buffer)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC | flags,
    )?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    Ok(received.bytes)
}

#[cfg(test)]
mod tests;
