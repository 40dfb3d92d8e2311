//! Large payloads: arguments or results over [`INLINE_MAX`] bytes travel in a sealed
//! memory file (`memfd`) whose descriptor is passed with the frame (`SCM_RIGHTS`), not
//! through the socket, which would take them in socket-buffer-sized pieces, each a
//! wake-up of the other side. The sender writes the bytes and seals the file against any
//! change before sending it; the receiver refuses a file that is not sealed or not the
//! announced length, so what it reads cannot change under it.
//!
//! Every send and receive on the socket between parent and worker goes through [`send`]
//! and [`recv`]: they carry descriptors, and never raise `SIGPIPE` (a dead worker's socket
//! is an error to handle, not a signal that ends the parent).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut, Read, Seek, SeekFrom, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// The largest payload sent inline in its frame. Above it, a memory file costs less than
/// the socket (measured by the `compare` benchmark's large-payload row).
pub(crate) const INLINE_MAX: usize = 64 * 1024;

/// The seals a payload file must carry: nothing can change its bytes or its length.
fn sealed() -> SealFlags {
    SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL
}

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

/// Puts `bytes` in a new memory file, sealed.
pub(crate) fn seal(bytes: &[u8]) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(
        "oneloop-payload",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut file = File::from(fd);
    file.write_all(bytes)?;
    rustix::fs::fcntl_add_seals(&file, sealed())?;
    Ok(file.into())
}

/// Reads the `len` bytes of a payload file the other side sealed.
pub(crate) fn unseal(fd: OwnedFd, len: u64) -> io::Result<Vec<u8>> {
    let seals = rustix::fs::fcntl_get_seals(&fd)?;
    if !seals.contains(SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE) {
        return Err(io::Error::other("a payload file that is not sealed"));
    }
    let mut file = File::from(fd);
    let size = file.metadata()?.len();
    if size != len {
        return Err(io::Error::other(format!(
            "a payload file of {size} bytes, announced as {len}"
        )));
    }
    // The file's offset is shared with the sender's descriptor (closed by now): start
    // from the beginning whatever it says.
    file.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).map_err(io::Error::other)?);
    file.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_sealed_payload_crosses_a_socket_with_its_frame_and_reads_back_whole() {
        let (a, b) = UnixStream::pair().unwrap();
        let payload: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let file = seal(&payload).unwrap();
        assert_eq!(send(&a, b"frame", Some(file.as_fd())).unwrap(), 5);
        drop(file);
        let mut fds = VecDeque::new();
        let mut buffer = [0; 16];
        assert_eq!(recv(&b, &mut buffer, &mut fds).unwrap(), 5);
        assert_eq!(&buffer[..5], b"frame");
        let fd = fds.pop_front().expect("the descriptor came with the frame");
        assert_eq!(unseal(fd, payload.len() as u64).unwrap(), payload);
    }

    #[test]
    fn an_unsealed_file_or_a_wrong_length_is_refused() {
        let fd = rustix::fs::memfd_create("test", MemfdFlags::CLOEXEC).unwrap();
        File::from(fd.try_clone().unwrap())
            .write_all(b"abc")
            .unwrap();
        assert!(unseal(fd, 3).is_err(), "not sealed");
        let fd = seal(b"abc").unwrap();
        assert!(unseal(fd, 4).is_err(), "wrong length");
    }
}
