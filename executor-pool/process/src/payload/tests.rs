//! The payload path, within one process: encoding, regions and their loans, views.

use std::collections::VecDeque;

use std::sync::Arc;

use rustix::fs::MemfdFlags;

use super::regions::{KEEP_REGIONS, Lease};
use super::views::KEEP_VIEWS;
use super::*;
use std::os::unix::net::UnixStream;

fn big(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct Message {
    before: u32,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
    after: String,
}

#[test]
fn small_values_stay_inline_and_big_ones_go_to_a_region_that_decodes_whole() {
    let regions = Arc::new(Regions::default());
    let small = encode(
        &Message {
            before: 1,
            data: vec![1; 10],
            after: "x".into(),
        },
        &regions,
    )
    .unwrap();
    assert!(matches!(small, Encoded::Inline(_)));
    let message = Message {
        before: 7,
        data: big(3 * INLINE_MAX, 5),
        after: "end".into(),
    };
    let encoded = encode(&message, &regions).unwrap();
    assert!(matches!(encoded, Encoded::Region(_)), "{encoded:?}");
    let back: Message = postcard::from_bytes(encoded.bytes()).unwrap();
    assert_eq!(back, message);
}

#[test]
fn a_region_crosses_a_socket_and_a_lent_one_is_reused_only_once_given_back() {
    let (a, b) = UnixStream::pair().unwrap();
    let regions = Arc::new(Regions::default());
    let mut views = Views::default();
    let mut first_id = None;
    for round in 0..3u8 {
        let payload = big(200_000 + round as usize, round);
        let Encoded::Region(mut lease) =
            encode(&serde_bytes::Bytes::new(&payload), &regions).unwrap()
        else {
            panic!("not in a region");
        };
        let loan = lease.lend();
        assert_eq!(send(&a, b"frame", Some(lease.fd())).unwrap(), 5);
        let len = lease.len() as u64;
        drop(lease);
        let mut fds = VecDeque::new();
        let mut buffer = [0; 16];
        assert_eq!(recv(&b, &mut buffer, &mut fds).unwrap(), 5);
        let lent = views
            .open(fds.pop_front().unwrap(), len, Some(loan))
            .unwrap();
        let back: serde_bytes::ByteBuf = postcard::from_bytes(lent.bytes()).unwrap();
        assert_eq!(back.as_slice(), payload.as_slice());
        // Still lent: the next encoding cannot have this region.
        let other = encode(&serde_bytes::Bytes::new(&payload), &regions).unwrap();
        let Encoded::Region(other) = other else {
            panic!("not in a region")
        };
        let lent_id = lent.view.id;
        let other_id = {
            let stat = rustix::fs::fstat(other.fd()).unwrap();
            (stat.st_dev as u64, stat.st_ino as u64)
        };
        assert_ne!(lent_id, other_id, "a region reused while lent");
        drop(other);
        drop(lent); // given back
        if let Some(first) = first_id {
            assert_eq!(views.views.iter().filter(|v| v.id == first).count(), 1);
        }
        first_id.get_or_insert(lent_id);
    }
    assert!(views.views.len() <= KEEP_VIEWS);
}

#[test]
fn a_file_that_may_shrink_or_is_shorter_than_announced_is_refused() {
    let fd = rustix::fs::memfd_create("test", MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, 4096).unwrap();
    assert!(Views::default().open(fd, 3, None).is_err(), "not sealed");
    let regions = Arc::new(Regions::default());
    let lease = regions.lease(10).unwrap();
    let fd = lease.fd().try_clone_to_owned().unwrap();
    assert!(
        Views::default().open(fd, 1 << 30, None).is_err(),
        "too long"
    );
}

#[test]
fn idle_regions_are_kept_within_the_limits() {
    let regions = Arc::new(Regions::default());
    let leases: Vec<Lease> = (0..10).map(|_| regions.lease(100_000).unwrap()).collect();
    drop(leases);
    assert_eq!(regions.pool.lock().idle.len(), KEEP_REGIONS);
}
