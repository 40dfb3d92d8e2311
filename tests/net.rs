//! Sockets: TCP and UDP on the reactor, edge-triggered readiness done right, split halves,
//! futures-io interop, and the errors a peer can cause.

mod util;

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use futures::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, StreamExt};
use oneloop::Runtime;
use oneloop::net::{TcpListener, TcpStream, UdpSocket};
use oneloop::time::{sleep, timeout};
use util::{assert_send, expect_panic, hang_guard};

/// A listener on a free loopback port, and its address.
async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A connected pair: (client, server side).
async fn pair() -> (TcpStream, TcpStream) {
    let (listener, addr) = listener().await;
    let client = oneloop::spawn(async move { TcpStream::connect(addr).await.unwrap() });
    let (server, _) = listener.accept().await.unwrap();
    (client.await.unwrap(), server)
}

#[test]
fn sockets_are_send() {
    assert_send::<TcpStream>();
    assert_send::<TcpListener>();
    assert_send::<UdpSocket>();
    assert_send::<oneloop::net::OwnedReadHalf>();
    assert_send::<oneloop::net::OwnedWriteHalf>();
}

#[test]
fn an_echo_round_trip_works() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let (listener, addr) = listener().await;
            let server = oneloop::spawn(async move {
                let (mut conn, peer) = listener.accept().await.unwrap();
                let mut buf = [0u8; 5];
                conn.read_exact(&mut buf).await.unwrap();
                conn.write_all(&buf).await.unwrap();
                peer
            });
            let mut client = TcpStream::connect(addr).await.unwrap();
            client.set_nodelay(true).unwrap();
            assert!(client.nodelay().unwrap());
            client.write_all(b"hello").await.unwrap();
            let mut back = [0u8; 5];
            client.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"hello");
            assert_eq!(server.await.unwrap(), client.local_addr().unwrap());
            assert_eq!(client.peer_addr().unwrap(), addr);
        });
    });
}

/// Sends `payload` while receiving as much from the peer, on the stream's two halves.
async fn exchange(stream: &mut TcpStream, payload: Vec<u8>) -> Vec<u8> {
    let (mut read, mut write) = stream.split();
    let send = async {
        write.write_all(&payload).await.unwrap();
    };
    let receive = async {
        let mut got = vec![0u8; payload.len()];
        read.read_exact(&mut got).await.unwrap();
        got
    };
    let ((), got) = futures::join!(send, receive);
    got
}

#[test]
fn a_megabyte_each_way_at_once_completes() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let (mut a, mut b) = pair().await;
            let payload: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
            // Both sides write a megabyte before reading: more than the socket buffers
            // hold, so each write blocks until the other side reads. Reading and writing
            // concurrently on split halves is what lets both finish.
            let (from_b, from_a) = futures::join!(
                exchange(&mut a, payload.clone()),
                exchange(&mut b, payload.clone())
            );
            assert!(from_a == payload && from_b == payload);
        });
    });
}

#[test]
fn a_reader_and_a_writer_in_two_tasks_on_one_socket_both_progress() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let (client, mut server) = pair().await;
            let (mut read, mut write) = client.into_split();
            // The reader waits for data that only comes after the writer has filled the
            // socket and blocked: both wait on the same socket at the same time.
            let reader = oneloop::spawn(async move {
                let mut reply = [0u8; 3];
                read.read_exact(&mut reply).await.unwrap();
                reply
            });
            let big = vec![7u8; 4 << 20];
            let writer = oneloop::spawn(async move {
                write.write_all(&big).await.unwrap();
                write
            });
            sleep(Duration::from_millis(10)).await;
            server.write_all(b"ack").await.unwrap();
            let mut drained = vec![0u8; 4 << 20];
            server.read_exact(&mut drained).await.unwrap();
            assert_eq!(&reader.await.unwrap(), b"ack");
            let write = writer.await.unwrap();
            assert!(drained.iter().all(|&b| b == 7));
            drop(write); // shuts the write side: the server reads end-of-file
            assert_eq!(server.read(&mut [0u8; 1]).await.unwrap(), 0);
        });
    });
}

#[test]
fn owned_halves_reunite_only_with_their_own_stream() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let (a, _a_peer) = pair().await;
            let (b, _b_peer) = pair().await;
            let (a_read, a_write) = a.into_split();
            let (b_read, b_write) = b.into_split();
            let error = a_read.reunite(b_write).unwrap_err();
            let (a_read, b_write) = (error.0, error.1);
            let mut a = a_read.reunite(a_write).expect("its own half");
            let _b = b_read.reunite(b_write).expect("its own half");
            a.write_all(b"still open").await.unwrap();
        });
    });
}

#[test]
fn futures_io_helpers_work_with_oneloop_sockets() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let (mut client, server) = pair().await;
            let lines = oneloop::spawn(async move {
                let reader = futures::io::BufReader::new(server);
                reader.lines().map(Result::unwrap).collect::<Vec<_>>().await
            });
            AsyncWriteExt::write_all(&mut client, b"one\ntwo\nthree\n")
                .await
                .unwrap();
            AsyncWriteExt::close(&mut client).await.unwrap();
            assert_eq!(lines.await.unwrap(), ["one", "two", "three"]);

            let (mut client, mut server) = pair().await;
            let copied = oneloop::spawn(async move {
                let mut sink = Vec::new();
                futures::io::copy(&mut server, &mut sink).await.unwrap();
                sink
            });
            client.write_all(&[9u8; 100_000]).await.unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            AsyncReadExt::read_to_end(&mut client, &mut rest)
                .await
                .unwrap();
            assert_eq!(copied.await.unwrap(), vec![9u8; 100_000]);
        });
    });
}

#[test]
fn connecting_where_nobody_listens_is_refused() {
    hang_guard(|| {
        // A port that was just free: bind it, note it, let it go.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let error = Runtime::new()
            .block_on(TcpStream::connect(addr))
            .expect_err("nothing listens there");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
    });
}

/// Closes `stream` with a reset (RST) instead of an orderly FIN: SO_LINGER with a zero
/// timeout.
fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let stream = stream.into_std().unwrap();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor, and a `linger` struct of the size given.
    let status = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(status, 0);
    drop(stream);
}

#[test]
fn a_peer_reset_is_reported_as_connection_reset() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let (mut client, server) = pair().await;
            client.write_all(b"unread").await.unwrap();
            sleep(Duration::from_millis(5)).await;
            reset(server);
            let error = client
                .read(&mut [0u8; 16])
                .await
                .expect_err("the peer reset the connection");
            assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
        });
    });
}

#[test]
fn a_closed_peer_reads_as_end_of_file_and_writes_fail() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let (mut client, server) = pair().await;
            drop(server);
            assert_eq!(client.read(&mut [0u8; 16]).await.unwrap(), 0, "end of file");
            // The first writes may still be accepted locally; soon the peer's reset comes
            // back and writing fails.
            let error = loop {
                match client.write(b"anyone there?").await {
                    Ok(_) => sleep(Duration::from_millis(1)).await,
                    Err(error) => break error,
                }
            };
            assert!(
                matches!(
                    error.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ),
                "{error:?}"
            );
        });
    });
}

#[test]
fn udp_sends_and_receives_datagrams_both_ways() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let a = Rc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
            let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
            // One task receives on `a` while this one sends from it.
            let receiver = oneloop::spawn({
                let a = a.clone();
                async move {
                    let mut buf = [0u8; 32];
                    let (n, from) = a.recv_from(&mut buf).await.unwrap();
                    (buf[..n].to_vec(), from)
                }
            });
            a.send_to(b"ping", b_addr).await.unwrap();
            let mut buf = [0u8; 32];
            let (n, from) = b.recv_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], from), (&b"ping"[..], a_addr));
            b.connect(a_addr).await.unwrap();
            assert_eq!(b.peer_addr().unwrap(), a_addr);
            b.send(b"pong").await.unwrap();
            assert_eq!(receiver.await.unwrap(), (b"pong".to_vec(), b_addr));
            a.connect(b_addr).await.unwrap();
            a.send(b"again").await.unwrap();
            let n = b.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"again");
        });
    });
}

#[test]
fn names_are_resolved_off_the_loop() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let addrs: Vec<_> = oneloop::net::lookup_host("localhost:7")
                .await
                .unwrap()
                .collect();
            assert!(!addrs.is_empty());
            assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 7));
            let listener = TcpListener::bind(("localhost", 0)).await.unwrap();
            assert!(listener.local_addr().unwrap().ip().is_loopback());
            let error = TcpStream::connect("no-such-host.invalid:80")
                .await
                .expect_err("an unknown name");
            let _ = error; // the resolver's error, whatever the platform calls it
        });
    });
}

#[test]
fn dropping_sockets_deregisters_them() {
    let rt = Runtime::new();
    rt.block_on(async {
        let (listener, _) = listener().await;
        let (a, b) = pair().await;
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert_eq!(rt.metrics().io_sources, 4);
        drop((listener, a, b, udp));
        assert_eq!(rt.metrics().io_sources, 0);
    });
}

#[test]
fn std_sockets_convert_both_ways() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = std_listener.local_addr().unwrap();
            let listener = TcpListener::from_std(std_listener).unwrap();
            let std_client = std::net::TcpStream::connect(addr).unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let mut client = TcpStream::from_std(std_client).unwrap();
            let mut std_server = server.into_std().unwrap();
            std_server.set_nonblocking(false).unwrap();
            std::io::Write::write_all(&mut std_server, b"plain std").unwrap();
            let mut buf = [0u8; 9];
            client.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"plain std");
        });
    });
}

#[test]
fn a_read_can_time_out_without_losing_the_socket() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let (mut client, mut server) = pair().await;
            let mut buf = [0u8; 4];
            assert!(
                timeout(Duration::from_millis(10), client.read(&mut buf))
                    .await
                    .is_err()
            );
            server.write_all(b"late").await.unwrap();
            client.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"late");
        });
    });
}

#[test]
fn a_socket_used_in_another_runtime_is_refused() {
    let rt = Runtime::new();
    let socket = rt.block_on(UdpSocket::bind("127.0.0.1:0")).unwrap();
    let message = std::thread::spawn(move || {
        let other = Runtime::new();
        expect_panic(move || {
            other.block_on(async move {
                let _ = socket.recv(&mut [0u8; 1]).await;
            })
        })
    })
    .join()
    .unwrap();
    assert!(message.contains("belongs to runtime #"), "{message}");
}
