//! The reply parser: text and meta replies, pipelines read in any split,
//! malformed input, and the spans handed to the async caller.

use super::*;

// ---------------------------------------------------------------- text replies

#[test]
fn parse_retrieval_replies() {
    assert_eq!(
        parse_whole(b"VALUE foo 5 3\r\nbar\r\n"),
        Reply::Value(Item {
            key: b"foo",
            flags: 5,
            cas: None,
            data: b"bar",
        })
    );
    assert_eq!(
        parse_whole(b"VALUE foo 4294967295 4 18446744073709551615\r\na\r\nb\r\n"),
        Reply::Value(Item {
            key: b"foo",
            flags: u32::MAX,
            cas: Some(u64::MAX),
            data: b"a\r\nb",
        })
    );
    assert_eq!(
        parse_whole(b"VALUE k 0 0\r\n\r\n"),
        Reply::Value(Item {
            key: b"k",
            flags: 0,
            cas: None,
            data: b"",
        })
    );
    assert_eq!(parse_whole(b"END\r\n"), Reply::End);
}

#[test]
fn value_data_is_borrowed_from_the_buffer() {
    let buf = b"VALUE foo 0 3\r\nbar\r\n";
    let Some((Reply::Value(item), _)) = parse_reply(buf, MAX).unwrap() else {
        panic!("not a value");
    };
    assert!(std::ptr::eq(item.data.as_ptr(), buf[15..].as_ptr()));
    assert!(std::ptr::eq(item.key.as_ptr(), buf[6..].as_ptr()));
}

#[test]
fn parse_simple_text_replies() {
    let cases: [(&[u8], Reply<'_>); 11] = [
        (b"STORED\r\n", Reply::Stored),
        (b"NOT_STORED\r\n", Reply::NotStored),
        (b"EXISTS\r\n", Reply::Exists),
        (b"NOT_FOUND\r\n", Reply::NotFound),
        (b"DELETED\r\n", Reply::Deleted),
        (b"TOUCHED\r\n", Reply::Touched),
        (b"OK\r\n", Reply::Ok),
        (b"0\r\n", Reply::Number(0)),
        (b"42\r\n", Reply::Number(42)),
        (b"7   \r\n", Reply::Number(7)),
        (b"18446744073709551615\r\n", Reply::Number(u64::MAX)),
    ];
    for (input, expected) in cases {
        assert_eq!(parse_whole(input), expected, "{input:?}");
    }
    assert_eq!(
        parse_whole(b"VERSION 1.6.18\r\n"),
        Reply::Version(b"1.6.18")
    );
    assert_eq!(
        parse_whole(b"STAT pid 1234\r\n"),
        Reply::Stat {
            name: b"pid",
            value: b"1234"
        }
    );
    assert_eq!(
        parse_whole(b"STAT rusage_user 0.012 extra words\r\n"),
        Reply::Stat {
            name: b"rusage_user",
            value: b"0.012 extra words"
        }
    );
    assert_eq!(
        parse_whole(b"STAT sizes_status\r\n"),
        Reply::Stat {
            name: b"sizes_status",
            value: b""
        }
    );
}

#[test]
fn parse_error_lines() {
    assert_eq!(parse_whole(b"ERROR\r\n"), Reply::Error(b""));
    assert_eq!(
        parse_whole(b"ERROR unknown command\r\n"),
        Reply::Error(b"unknown command")
    );
    assert_eq!(
        parse_whole(b"CLIENT_ERROR bad data chunk\r\n"),
        Reply::ClientError(b"bad data chunk")
    );
    assert_eq!(
        parse_whole(b"SERVER_ERROR out of memory storing object\r\n"),
        Reply::ServerError(b"out of memory storing object")
    );
    assert_eq!(parse_whole(b"SERVER_ERROR\r\n"), Reply::ServerError(b""));
}

// ---------------------------------------------------------------- meta replies

#[test]
fn parse_meta_replies() {
    assert_eq!(
        parse_whole(b"VA 2 f1 t78\r\nhi\r\n"),
        meta(
            MetaStatus::Value(b"hi"),
            ReturnFlags {
                client_flags: Some(1),
                ttl: Some(RemainingTtl::Seconds(78)),
                ..ReturnFlags::default()
            }
        )
    );
    assert_eq!(
        parse_whole(b"VA 0\r\n\r\n"),
        meta(MetaStatus::Value(b""), ReturnFlags::default())
    );
    assert_eq!(
        parse_whole(b"HD\r\n"),
        meta(MetaStatus::Success, ReturnFlags::default())
    );
    assert_eq!(
        parse_whole(b"HD c123 t-1 s99 kfoo b O77 h1 l5 W X Z\r\n"),
        meta(
            MetaStatus::Success,
            ReturnFlags {
                cas: Some(123),
                ttl: Some(RemainingTtl::Never),
                size: Some(99),
                key: Some(b"foo"),
                base64_key: true,
                opaque: Some(77),
                hit_before: Some(true),
                last_access: Some(5),
                won: true,
                stale: true,
                win_taken: true,
                ..ReturnFlags::default()
            }
        )
    );
    let statuses = [
        (&b"EN\r\n"[..], MetaStatus::Miss),
        (b"NF\r\n", MetaStatus::NotFound),
        (b"NS\r\n", MetaStatus::NotStored),
        (b"EX\r\n", MetaStatus::Exists),
        (b"MN\r\n", MetaStatus::NoOp),
    ];
    for (input, status) in statuses {
        assert_eq!(
            parse_whole(input),
            meta(status, ReturnFlags::default()),
            "{input:?}"
        );
    }
    // Newer servers echo opaque and key on misses too.
    assert_eq!(
        parse_whole(b"EN O5 kbar\r\n"),
        meta(
            MetaStatus::Miss,
            ReturnFlags {
                opaque: Some(5),
                key: Some(b"bar"),
                ..ReturnFlags::default()
            }
        )
    );
    // An `ma ... v` reply carries the number as data.
    let reply = parse_whole(b"VA 2 c9\r\n43\r\n");
    let Reply::Meta(MetaReply {
        status: MetaStatus::Value(data),
        flags,
    }) = reply
    else {
        panic!("not VA: {reply:?}");
    };
    assert_eq!(parse_counter(data), Ok(43));
    let Reply::Meta(va) = reply else {
        unreachable!()
    };
    assert_eq!(va.value(), Some(&b"43"[..]));
    let Reply::Meta(hd) = parse_whole(b"HD\r\n") else {
        panic!("not meta")
    };
    assert_eq!(hd.value(), None);
    assert_eq!(flags.cas, Some(9));
    // Flags this client never asks for are skipped.
    assert_eq!(
        parse_whole(b"HD h0 Qxyz f7\r\n"),
        meta(
            MetaStatus::Success,
            ReturnFlags {
                hit_before: Some(false),
                client_flags: Some(7),
                ..ReturnFlags::default()
            }
        )
    );
}

#[test]
fn stale_and_win_markers_on_value() {
    assert_eq!(
        parse_whole(b"VA 3 c1 W X\r\nold\r\n"),
        meta(
            MetaStatus::Value(b"old"),
            ReturnFlags {
                cas: Some(1),
                won: true,
                stale: true,
                ..ReturnFlags::default()
            }
        )
    );
}

/// The meta sets behind `set_returning_cas` and `compare_and_set`, and
/// the replies memcached 1.6.18 gives them (`c` asks for the new CAS).
#[test]
fn meta_set_returning_cas() {
    let k = key("doc");
    let unconditional = MetaSetFlags {
        ttl: Some(60),
        client_flags: Some(16),
        return_cas: true,
        ..MetaSetFlags::default()
    };
    assert_eq!(
        encoded(|o| encode_meta_set(o, k, b"v1", &unconditional)),
        b"ms doc 2 T60 F16 c\r\nv1\r\n"
    );
    let conditional = MetaSetFlags {
        compare_cas: Some(41),
        ..unconditional
    };
    assert_eq!(
        encoded(|o| encode_meta_set(o, k, b"v2", &conditional)),
        b"ms doc 2 T60 F16 C41 c\r\nv2\r\n"
    );

    // Stored: the new CAS comes back on `HD` (every strict prefix of each
    // reply asks for more bytes: `parse_whole` checks).
    let stored = |cas| {
        meta(
            MetaStatus::Success,
            ReturnFlags {
                cas: Some(cas),
                ..ReturnFlags::default()
            },
        )
    };
    assert_eq!(parse_whole(b"HD c42\r\n"), stored(42));
    assert_eq!(
        parse_whole(b"HD c18446744073709551615\r\n"),
        stored(u64::MAX)
    );
    // Not stored: the server sends `c0` along with the status.
    assert_eq!(
        parse_whole(b"NF c0\r\n"),
        meta(
            MetaStatus::NotFound,
            ReturnFlags {
                cas: Some(0),
                ..ReturnFlags::default()
            }
        )
    );
    assert_eq!(
        parse_whole(b"EX c43\r\n"),
        meta(
            MetaStatus::Exists,
            ReturnFlags {
                cas: Some(43),
                ..ReturnFlags::default()
            }
        )
    );

    // Pipelined, and cut anywhere: the same replies, in order.
    let replies: &[u8] = b"HD c7\r\nEX c8\r\nHD c9 O1\r\n";
    for cut in 0..=replies.len() {
        let (head, tail) = replies.split_at(cut);
        let mut buf = head.to_vec();
        let mut got = Vec::new();
        let mut fed_tail = false;
        loop {
            match parse_reply(&buf, MAX).unwrap() {
                Some((reply @ Reply::Meta(MetaReply { flags, .. }), used)) => {
                    got.push((reply.name(), flags.cas));
                    buf.drain(..used);
                }
                Some((other, _)) => panic!("unexpected {other:?}"),
                None if !fed_tail => {
                    buf.extend_from_slice(tail);
                    fed_tail = true;
                }
                None => break,
            }
        }
        assert!(buf.is_empty(), "cut {cut}: leftover {buf:?}");
        assert_eq!(
            got,
            [("HD", Some(7)), ("EX", Some(8)), ("HD", Some(9)),],
            "cut {cut}"
        );
    }

    // A CAS token that is not a u64 is refused.
    for bad in [
        &b"HD c\r\n"[..],
        b"HD c-1\r\n",
        b"HD c18446744073709551616\r\n",
        b"HD c1x\r\n",
    ] {
        assert!(
            matches!(parse_err(bad), ProtocolError::BadNumber { .. }),
            "{bad:?}"
        );
    }
}

#[test]
fn reply_names() {
    assert_eq!(Reply::Stored.name(), "STORED");
    assert_eq!(Reply::Number(1).name(), "<number>");
    assert_eq!(
        meta(MetaStatus::Value(b""), ReturnFlags::default()).name(),
        "VA"
    );
    assert_eq!(meta(MetaStatus::NoOp, ReturnFlags::default()).name(), "MN");
}

#[test]
fn parse_counters() {
    assert_eq!(parse_counter(b"0"), Ok(0));
    assert_eq!(parse_counter(b"12  "), Ok(12));
    assert_eq!(parse_counter(b"18446744073709551615"), Ok(u64::MAX));
    for bad in [&b""[..], b" ", b"18446744073709551616", b"-1", b"1a", b" 1"] {
        assert!(
            matches!(parse_counter(bad), Err(ProtocolError::BadNumber { .. })),
            "{bad:?}"
        );
    }
}

// ---------------------------------------------------------------- streaming

/// Every reply kind back to back, as a pipelined connection receives them.
const PIPELINE: &[u8] = b"VALUE a 1 3 77\r\none\r\n\
VALUE b 2 0\r\n\r\n\
END\r\n\
STORED\r\nNOT_STORED\r\nEXISTS\r\nNOT_FOUND\r\nDELETED\r\nTOUCHED\r\nOK\r\n\
12\r\n\
VERSION 1.6.18\r\n\
STAT pid 1\r\nEND\r\n\
ERROR\r\nCLIENT_ERROR oops\r\nSERVER_ERROR busy\r\n\
VA 5 f3 c8\r\nEND\r\n\r\n\
HD O1\r\nEN\r\nNF\r\nNS\r\nEX\r\nMN\r\n\
VA 2 f0 kfoo O4294967295\r\nhi\r\nEN kbar O2\r\nNS k~:x O3\r\n";

fn parse_all(mut buf: &[u8]) -> Vec<Reply<'_>> {
    let mut replies = Vec::new();
    while !buf.is_empty() {
        let (reply, consumed) = parse_reply(buf, MAX).unwrap().unwrap();
        replies.push(reply);
        buf = &buf[consumed..];
    }
    replies
}

#[test]
fn pipelined_replies_parse_in_order() {
    let names: Vec<_> = parse_all(PIPELINE).iter().map(Reply::name).collect();
    assert_eq!(
        names,
        [
            "VALUE",
            "VALUE",
            "END",
            "STORED",
            "NOT_STORED",
            "EXISTS",
            "NOT_FOUND",
            "DELETED",
            "TOUCHED",
            "OK",
            "<number>",
            "VERSION",
            "STAT",
            "END",
            "ERROR",
            "CLIENT_ERROR",
            "SERVER_ERROR",
            "VA",
            "HD",
            "EN",
            "NF",
            "NS",
            "EX",
            "MN",
            "VA",
            "EN",
            "NS"
        ]
    );
    let replies = parse_all(PIPELINE);
    assert_eq!(
        replies[0],
        Reply::Value(Item {
            key: b"a",
            flags: 1,
            cas: Some(77),
            data: b"one"
        })
    );
    // The key and opaque echoes of memcached 1.6, whatever the split.
    assert_eq!(
        replies[24],
        meta(
            MetaStatus::Value(b"hi"),
            ReturnFlags {
                client_flags: Some(0),
                key: Some(b"foo"),
                opaque: Some(u32::MAX),
                ..ReturnFlags::default()
            }
        )
    );
    assert_eq!(
        replies[26],
        meta(
            MetaStatus::NotStored,
            ReturnFlags {
                key: Some(b"~:x"),
                opaque: Some(3),
                ..ReturnFlags::default()
            }
        )
    );
    // A data block that looks like a reply line is still data.
    assert_eq!(
        replies[17],
        meta(
            MetaStatus::Value(b"END\r\n"),
            ReturnFlags {
                client_flags: Some(3),
                cas: Some(8),
                ..ReturnFlags::default()
            }
        )
    );
}

/// Splits the pipeline at every byte: the reader must see exactly the same
/// replies whichever way the bytes arrive.
#[test]
fn every_split_of_the_pipeline_gives_the_same_replies() {
    let expected = parse_all(PIPELINE);
    for split in 0..=PIPELINE.len() {
        let mut buf: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        for chunk in [&PIPELINE[..split], &PIPELINE[split..]] {
            buf.extend_from_slice(chunk);
            while let Some((reply, consumed)) = parse_reply(&buf, MAX).unwrap() {
                got.push(format!("{reply:?}"));
                buf.drain(..consumed);
            }
        }
        assert!(buf.is_empty(), "split {split}: leftover {buf:?}");
        let expected: Vec<_> = expected.iter().map(|r| format!("{r:?}")).collect();
        assert_eq!(got, expected, "split at {split}");
    }
}

#[test]
fn one_byte_at_a_time() {
    let expected: Vec<_> = parse_all(PIPELINE)
        .iter()
        .map(|r| format!("{r:?}"))
        .collect();
    let mut buf = Vec::new();
    let mut got = Vec::new();
    for &byte in PIPELINE {
        buf.push(byte);
        if let Some((reply, consumed)) = parse_reply(&buf, MAX).unwrap() {
            got.push(format!("{reply:?}"));
            buf.drain(..consumed);
        }
    }
    assert!(buf.is_empty());
    assert_eq!(got, expected);
}

// ---------------------------------------------------------------- malformed

#[test]
fn malformed_lines_are_errors() {
    let unknown = [
        &b"\r\n"[..],
        b"HELLO\r\n",
        b"stored\r\n",
        b"VALUES a 0 1\r\n",
        b" STORED\r\n",
        b"-1\r\n",
    ];
    for input in unknown {
        assert!(
            matches!(parse_err(input), ProtocolError::UnknownReply { .. }),
            "{input:?}"
        );
    }
    let malformed = [
        &b"STORED now\r\n"[..],
        b"END x\r\n",
        b"OK then\r\n",
        b"VALUE\r\n",
        b"VALUE a\r\n",
        b"VALUE a 0\r\n",
        b"VALUE a 0 1 2 3\r\n",
        b"VA\r\n",
        b"STAT\r\n",
        b"STAT  x\r\n",
        b"12 13\r\n",
    ];
    for input in malformed {
        assert!(
            matches!(parse_err(input), ProtocolError::Malformed { .. }),
            "{input:?}"
        );
    }
    let bad_numbers = [
        &b"VALUE a x 1\r\n"[..],
        b"VALUE a 0 -1\r\n",
        b"VALUE a 4294967296 1\r\n",
        b"VALUE a 0 1 18446744073709551616\r\n",
        b"VALUE a 0 99999999999999999999999\r\n",
        b"VALUE a 0 +1\r\n",
        b"VA x\r\n",
        b"HD c-1\r\n",
        b"HD f4294967296\r\n",
        b"HD t-2\r\n",
        b"HD t\r\n",
        b"HD Oabc\r\n",
        b"18446744073709551616\r\n",
        b"12x\r\n",
    ];
    for input in bad_numbers {
        assert!(
            matches!(parse_err(input), ProtocolError::BadNumber { .. }),
            "{input:?}"
        );
    }
    for input in [&b"HD 1\r\n"[..], b"HD h2\r\n", b"HD k\r\n", b"EN \x01\r\n"] {
        assert!(
            matches!(parse_err(input), ProtocolError::BadMetaFlag { .. }),
            "{input:?}"
        );
    }
}

#[test]
fn bad_line_endings_and_overlong_lines() {
    assert_eq!(parse_err(b"STORED\n"), ProtocolError::BadLineEnding);
    assert_eq!(parse_err(b"\n"), ProtocolError::BadLineEnding);
    assert_eq!(parse_err(b"END\n\r\n"), ProtocolError::BadLineEnding);
    let long = vec![b'A'; MAX_LINE_LEN];
    assert_eq!(
        parse_err(&long),
        ProtocolError::LineTooLong {
            limit: MAX_LINE_LEN
        }
    );
    // One byte short of the limit is still "need more".
    assert_eq!(parse_reply(&long[..MAX_LINE_LEN - 1], MAX), Ok(None));
    // A line that ends exactly at the limit is accepted.
    let mut stat = b"STAT x ".to_vec();
    stat.resize(MAX_LINE_LEN - 2, b'y');
    stat.extend_from_slice(b"\r\n");
    assert!(matches!(
        parse_reply(&stat, MAX),
        Ok(Some((Reply::Stat { .. }, n))) if n == MAX_LINE_LEN
    ));
}

#[test]
fn data_blocks_are_bounded_and_terminated() {
    // Too large: refused as soon as the line is in, before the data arrives.
    assert_eq!(
        parse_reply(b"VALUE a 0 11\r\n", 10),
        Err(ProtocolError::DataTooLarge { size: 11, max: 10 })
    );
    assert_eq!(
        parse_reply(b"VA 1099511627776\r\n", usize::MAX),
        Ok(None),
        "a huge but allowed size just waits for data"
    );
    // A size whose frame length would overflow usize can never be buffered.
    assert_eq!(
        parse_reply(b"VA 18446744073709551615\r\n", usize::MAX),
        Err(ProtocolError::DataTooLarge {
            size: u64::MAX,
            max: usize::MAX
        })
    );
    assert_eq!(
        parse_reply(b"VA 18446744073709551615\r\n", MAX),
        Err(ProtocolError::DataTooLarge {
            size: u64::MAX,
            max: MAX
        })
    );
    assert_eq!(
        parse_reply(b"VALUE a 0 10\r\n0123456789\r\n", 10).map(|r| r.map(|(_, n)| n)),
        Ok(Some(26))
    );
    // The two bytes after the data must be \r\n.
    for input in [
        &b"VALUE a 0 3\r\nbarXY"[..],
        b"VALUE a 0 3\r\nbar\rX",
        b"VALUE a 0 3\r\nbar\n\r",
        b"VALUE a 0 2\r\nbar\r\n",
        b"VA 1\r\nab\r\n",
    ] {
        assert_eq!(
            parse_err(input),
            ProtocolError::MissingDataTerminator,
            "{input:?}"
        );
    }
}

#[test]
fn errors_do_not_depend_on_later_bytes() {
    // Once a prefix is an error, any continuation is the same error.
    for input in [&b"STORED\n"[..], b"HELLO\r\n", b"VALUE a 0 3\r\nbarXY"] {
        let e = parse_err(input);
        let mut longer = input.to_vec();
        longer.extend_from_slice(b"STORED\r\n");
        assert_eq!(parse_err(&longer), e, "{input:?}");
    }
}

// ---------------------------------------------------------------- spans

/// A meta reply kept as spans reads back, from a copy of its frame at
/// another address, as parsing that copy gives: every status, with and
/// without a value, key and flags.
#[test]
fn meta_spans_read_back_from_a_moved_frame() {
    let frames: [&[u8]; 8] = [
        b"VA 5 f7 kname O42 c99 t-1\r\nhello\r\n",
        b"VA 0 kname O1\r\n\r\n",
        b"HD O3 kname W\r\n",
        b"EN O4 kname\r\n",
        b"NF O5\r\n",
        b"NS O6 kname\r\n",
        b"EX O7 kname c12\r\n",
        b"MN\r\n",
    ];
    for frame in frames {
        // What the reader parses, followed by the next reply's bytes.
        let mut read = frame.to_vec();
        read.extend_from_slice(b"HD O8 kother\r\n");
        let (Reply::Meta(meta), used) = parse_reply(&read, MAX).unwrap().unwrap() else {
            panic!("{frame:?} is a meta reply");
        };
        assert_eq!(used, frame.len());
        let spans = MetaSpans::new(&meta, &read, used).expect("parts inside the frame");
        assert_eq!(spans.len(), frame.len());
        // The frame handed on: other bytes, at another address.
        let moved = read[..used].to_vec();
        let Reply::Meta(direct) = parse_whole(&moved) else {
            unreachable!("parsed as meta above");
        };
        assert_eq!(spans.resolve(&moved), Some(direct), "{frame:?}");
        // A frame cut short reads back as nothing, not a wrong value.
        if let MetaStatus::Value(data) = direct.status {
            let cut = used - data.len() - 3;
            assert_eq!(spans.resolve(&moved[..cut]), None, "{frame:?} cut");
        }
    }
}

/// A reply not parsed from the given bytes gives no spans.
#[test]
fn meta_spans_need_the_frame_the_reply_came_from() {
    let frame = b"VA 2 kab O9\r\nhi\r\n".to_vec();
    let elsewhere = frame.clone();
    let Reply::Meta(meta) = parse_whole(&frame) else {
        panic!("a meta reply");
    };
    assert!(MetaSpans::new(&meta, &elsewhere, frame.len()).is_none());
    assert!(MetaSpans::new(&meta, &frame, frame.len()).is_some());
}
