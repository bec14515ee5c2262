//! The frame and hello checks at their bounds: each limit taken exactly and refused one
//! past it, and the refusal naming the bound that applied.

use super::*;

fn header(kind: FrameKind, len: u32) -> Header {
    Header {
        kind,
        len,
        crc: 0,
        seq: 0,
    }
}

#[test]
fn check_len_takes_exactly_the_bound_and_names_it_when_refusing() {
    for kind in [FrameKind::Hello, FrameKind::Data] {
        assert_eq!(check_len(&header(kind, 0), 0, "o").unwrap(), 0);
        assert_eq!(check_len(&header(kind, 40), HELLO_LEN, "o").unwrap(), 40);
        assert_eq!(check_len(&header(kind, 1024), 1024, "o").unwrap(), 1024);
        assert!(check_len(&header(kind, 1), 0, "o").is_err());
    }
    // Before the hello, a hello is refused by a hello's bound...
    let e = check_len(&header(FrameKind::Hello, 41), HELLO_LEN, "o").unwrap_err();
    assert_eq!(e.kind, crate::Kind::Verify);
    assert!(e.call.contains("more than the 40 bytes of a hello"), "{e}");
    // ...any other frame there, or anything after it, by the announced size.
    let e = check_len(&header(FrameKind::Data, 41), HELLO_LEN, "o").unwrap_err();
    assert!(e.call.contains("the bound of 40 bytes"), "{e}");
    let e = check_len(&header(FrameKind::Hello, 1025), 1024, "o").unwrap_err();
    assert!(e.call.contains("the bound of 1024 bytes"), "{e}");
    assert!(e.call.contains("announces 1025 payload bytes"), "{e}");
}

#[test]
fn a_header_may_announce_up_to_the_largest_message() {
    let mut b = Header::for_payload(FrameKind::Data, 0, b"").encode();
    b[8..12].copy_from_slice(&(MAX_SIZE as u32).to_le_bytes());
    assert_eq!(Header::decode(&b).unwrap().len as usize, MAX_SIZE);
    b[8..12].copy_from_slice(&(MAX_SIZE as u32 + 1).to_le_bytes());
    assert_eq!(
        Header::decode(&b),
        Err(FrameError::Length(MAX_SIZE as u32 + 1))
    );
    for (k, kind) in [
        (1, FrameKind::Hello),
        (2, FrameKind::Data),
        (3, FrameKind::End),
        (4, FrameKind::Echo),
    ] {
        b[4] = k;
        b[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(Header::decode(&b).unwrap().kind, kind);
    }
    b[4] = 0;
    assert_eq!(Header::decode(&b), Err(FrameError::Kind(0)));
}

#[test]
fn a_hello_announces_a_size_from_one_byte_to_the_largest_message() {
    let hello = |mode, payload, size| Hello {
        mode,
        payload,
        count: 5,
        size,
    };
    for mode in [Mode::Stream, Mode::Pingpong] {
        for payload in [Payload::Generated { seed: 3 }, Payload::File] {
            for size in [1, 64, MAX_SIZE as u64] {
                let h = hello(mode, payload, size);
                assert_eq!(Hello::decode(&h.encode()), Ok(h));
            }
            for size in [0, MAX_SIZE as u64 + 1, u64::MAX] {
                let b = hello(mode, payload, size).encode();
                assert_eq!(
                    Hello::decode(&b),
                    Err(FrameError::HelloField("message size"))
                );
            }
        }
    }
    let mut b = hello(Mode::Stream, Payload::File, 1).encode();
    b[4] = 2;
    assert_eq!(Hello::decode(&b), Err(FrameError::HelloField("mode")));
    b[4] = 0;
    b[5] = 2;
    assert_eq!(
        Hello::decode(&b),
        Err(FrameError::HelloField("payload kind"))
    );
    assert_eq!(Hello::decode(&[0; 41]), Err(FrameError::HelloLength(41)));
}
