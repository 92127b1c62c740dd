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
