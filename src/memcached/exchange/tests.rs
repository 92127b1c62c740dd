use super::*;
use crate::memcached::protocol::ReturnFlags;

fn echo<'a>(opaque: Option<u32>, key: Option<&'a [u8]>) -> ReturnFlags<'a> {
    ReturnFlags {
        opaque,
        key,
        ..ReturnFlags::default()
    }
}

#[test]
fn replies_are_matched_to_their_commands() {
    let mut tags = Tags::default();
    tags.push(b"a", 7);
    // Another token, none, another key, a base64 key: no match.
    assert!(!tags.answer(&echo(Some(6), Some(b"a"))));
    assert!(!tags.answer(&echo(Some(8), None)));
    assert!(!tags.answer(&echo(None, Some(b"a"))));
    assert!(!tags.answer(&echo(Some(7), Some(b"b"))));
    let base64 = ReturnFlags {
        base64_key: true,
        ..echo(Some(7), Some(b"a"))
    };
    assert!(!tags.answer(&base64));
    // The token, with the key or without: a match, once.
    assert!(tags.answer(&echo(Some(7), Some(b"a"))));
    assert!(!tags.answer(&echo(Some(7), Some(b"a"))));
    tags.clear();
    assert!(!tags.answer(&echo(Some(7), None)));
    tags.push(b"a", 9);
    assert!(tags.answer(&echo(Some(9), None)));

    // A pipeline of quiet commands, its tokens wrapping past u32::MAX:
    // replies come for some, in order, each with its own key.
    tags.clear();
    for (i, key) in [&b"k0"[..], b"k1", b"k22", b"k3"].into_iter().enumerate() {
        tags.push(key, (u32::MAX - 1).wrapping_add(i as u32));
    }
    assert!(!tags.answer(&echo(Some(0), Some(b"k1"))));
    assert!(tags.answer(&echo(Some(u32::MAX), Some(b"k1"))));
    // Not an earlier one again, nor one past the last.
    assert!(!tags.answer(&echo(Some(u32::MAX - 1), Some(b"k0"))));
    assert!(!tags.answer(&echo(Some(2), Some(b"k4"))));
    assert!(tags.answer(&echo(Some(1), Some(b"k3"))));
    assert!(!tags.answer(&echo(Some(0), Some(b"k22"))));
}

#[test]
fn long_and_short_keys_are_matched_alike() {
    let long = vec![b'x'; 200];
    for first_long in [true, false] {
        let mut tags = Tags::default();
        let keys: Vec<&[u8]> = if first_long {
            vec![&long, b"a", &long[..70]]
        } else {
            vec![b"a", &long, b"bb"]
        };
        for (i, key) in keys.iter().enumerate() {
            tags.push(key, 10 + i as u32);
        }
        // Each with its own key, and no other's.
        assert!(!tags.answer(&echo(Some(10), Some(keys[1]))));
        for (i, key) in keys.iter().enumerate() {
            assert!(
                tags.answer(&echo(Some(10 + i as u32), Some(key))),
                "{first_long} {i}"
            );
        }
        assert!(!tags.answer(&echo(Some(13), None)), "past the last");
    }
}

/// Feeds `framer` the frames of `wire` (parsed one by one) and returns what
/// each one did.
fn frame_all(framing: Framing, wire: &[u8]) -> Vec<Framed> {
    let mut framer = Framer::new(framing);
    let mut out = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let (reply, used) = crate::memcached::protocol::parse_reply(&wire[at..], 1024)
            .unwrap()
            .unwrap();
        out.push(framer.push(&reply));
        at += used;
    }
    out
}

#[test]
fn the_framer_says_where_each_kind_of_reply_ends() {
    use Framed::{Broken, More, Whole};
    // One reply per command.
    assert_eq!(frame_all(Framing::Replies(1), b"HD O1\r\n"), [Whole]);
    let three = b"HD O1\r\nEN O2\r\nSERVER_ERROR out of memory\r\n";
    assert_eq!(frame_all(Framing::Replies(3), three), [More, More, Whole]);
    // Up to END (a text get, stats); a server error ends it too.
    let get = b"VALUE a 0 1\r\nx\r\nVALUE b 0 1\r\ny\r\nEND\r\n";
    assert_eq!(frame_all(Framing::UntilEnd, get), [More, More, Whole]);
    assert_eq!(
        frame_all(Framing::UntilEnd, b"STAT pid 1\r\nEND\r\n"),
        [More, Whole]
    );
    assert_eq!(
        frame_all(Framing::UntilEnd, b"SERVER_ERROR busy\r\n"),
        [Whole]
    );
    // Up to MN (quiet sets then mn); refusals and server errors come before it.
    let quiet = b"NS O3\r\nSERVER_ERROR out of memory\r\nMN\r\n";
    assert_eq!(frame_all(Framing::UntilNoop, quiet), [More, More, Whole]);
    // An ERROR or CLIENT_ERROR line ends any reply and breaks the stream;
    // so does a frame a text request cannot get.
    for framing in [Framing::Replies(2), Framing::UntilEnd, Framing::UntilNoop] {
        assert_eq!(frame_all(framing, b"ERROR\r\n"), [Broken]);
        assert_eq!(
            frame_all(framing, b"CLIENT_ERROR bad data chunk\r\n"),
            [Broken]
        );
    }
    assert_eq!(frame_all(Framing::UntilEnd, b"HD O1\r\n"), [Broken]);
    assert_eq!(frame_all(Framing::UntilNoop, b"STORED\r\n"), [Broken]);
}
