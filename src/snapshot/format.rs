//! The snapshot file: its layout, its checks, and its atomic write.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "nearfar\x1a"
//!      8     4  format version (u32, little-endian, like every number here)
//!     12     1  kind: 1 entries (keys and values), 2 keys only
//!     13     3  zero
//!     16     8  saved at: nanoseconds since the Unix epoch (wall clock)
//!     24     8  generation (a NearFar's namespace generation; 0 for a Cache)
//!     32     8  record count
//!     40     8  body length
//!     48     4  CRC-32 of bytes 0..48
//!     52     -  body: the key type's name, the value type's name (each a
//!               u16 length and UTF-8), then the records
//!    end-4   4  CRC-32 of the body
//! ```
//!
//! A record is a key, or for kind 1 a TTL, a use count, a key and a value:
//! the TTL is what was left of the entry's when the file was saved, in
//! nanoseconds (u64; 0: none), the use count a u8 (0 to 3), and a key or
//! value is its codec's flags (u32), length (u32) and bytes.
//!
//! Reading checks, in this order, before anything is decoded: the magic,
//! the version, the length, the header's checksum, the body's; then the
//! kind and the type names, then every record parses. A file is written
//! under a temporary name in its directory, flushed to disk, and renamed
//! over the old one (then the directory is flushed): a crash at any point
//! leaves the old file or the new one, never a mix.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::SnapshotError;

/// The first bytes of every snapshot.
const MAGIC: [u8; 8] = *b"nearfar\x1a";
/// The format version this build writes and reads.
pub(super) const VERSION: u32 = 1;
/// Header bytes, its checksum included.
const HEADER: usize = 52;
/// The body's checksum, at the end.
const TRAILER: usize = 4;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Keys and values, with their TTLs.
    Entries = 1,
    /// Keys only (a NearFar's preload list).
    Keys = 2,
}

impl Kind {
    fn of(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Entries),
            2 => Some(Kind::Keys),
            _ => None,
        }
    }

    /// What a file of this kind holds, for `WrongType`'s message.
    pub(super) fn describe(self, key: &str, value: &str) -> String {
        match self {
            Kind::Entries => format!("entries of ({key}, {value})"),
            Kind::Keys => format!("keys of {key}"),
        }
    }
}

/// A file's header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Header<'a> {
    pub(super) kind: Kind,
    /// Nanoseconds since the Unix epoch.
    pub(super) saved_at: u64,
    pub(super) generation: u64,
    pub(super) count: u64,
    pub(super) key_type: &'a str,
    pub(super) value_type: &'a str,
}

/// The whole file for `header` and its `records` (concatenated).
pub(super) fn encode(header: &Header<'_>, records: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(records.len() + 256);
    for name in [header.key_type, header.value_type] {
        // Type names are short; a longer one is cut at a char boundary
        // (it only has to match the reader's, cut the same way).
        let name = cut(name, usize::from(u16::MAX));
        body.extend_from_slice(&(name.len() as u16).to_le_bytes());
        body.extend_from_slice(name.as_bytes());
    }
    body.extend_from_slice(records);
    let mut file = Vec::with_capacity(HEADER + body.len() + TRAILER);
    file.extend_from_slice(&MAGIC);
    file.extend_from_slice(&VERSION.to_le_bytes());
    file.extend_from_slice(&[header.kind as u8, 0, 0, 0]);
    for n in [header.saved_at, header.generation, header.count] {
        file.extend_from_slice(&n.to_le_bytes());
    }
    // The body's length and the checksums: filled in by `seal`.
    file.resize(HEADER, 0);
    file.extend_from_slice(&body);
    file.extend_from_slice(&[0; TRAILER]);
    seal(&mut file);
    file
}

/// Writes the body's length and both checksums into `file` for the bytes
/// it holds (a file shorter than a header and a trailer is left as it is).
/// What `encode` ends with; the fuzz target's way past the checksums to
/// the decoding of a changed file.
pub(super) fn seal(file: &mut [u8]) {
    let Some(body_len) = file.len().checked_sub(HEADER + TRAILER) else {
        return;
    };
    file[HEADER - 12..HEADER - 4].copy_from_slice(&(body_len as u64).to_le_bytes());
    let crc = crc32fast::hash(&file[..HEADER - 4]);
    file[HEADER - 4..HEADER].copy_from_slice(&crc.to_le_bytes());
    let (body, trailer) = file[HEADER..].split_at_mut(body_len);
    trailer.copy_from_slice(&crc32fast::hash(body).to_le_bytes());
}

/// `name` cut to at most `max` bytes, at a char boundary.
pub(super) fn cut(name: &str, max: usize) -> &str {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// A file whose layout and checksums were verified.
#[derive(Debug)]
pub(super) struct Verified<'a> {
    pub(super) header: Header<'a>,
    /// The records, the type names before them left out.
    pub(super) records: Reader<'a>,
}

/// Verifies `file` (see the module docs for the order of the checks).
pub(super) fn verify(file: &[u8]) -> Result<Verified<'_>, SnapshotError> {
    let found = file.len() as u64;
    let truncated = |expected: u64| SnapshotError::Truncated { expected, found };
    if file.len() < MAGIC.len() {
        // A cut-off start of a snapshot, or something else.
        return Err(if MAGIC.starts_with(file) {
            truncated((HEADER + TRAILER) as u64)
        } else {
            SnapshotError::NotASnapshot
        });
    }
    if file[..MAGIC.len()] != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    let mut head = Reader::new(&file[MAGIC.len()..]);
    let version = head
        .u32()
        .map_err(|_| truncated((HEADER + TRAILER) as u64))?;
    if version != VERSION {
        return Err(SnapshotError::Version {
            found: version,
            supported: VERSION,
        });
    }
    if file.len() < HEADER + TRAILER {
        return Err(truncated((HEADER + TRAILER) as u64));
    }
    let stored = u32::from_le_bytes(file[HEADER - 4..HEADER].try_into().expect("4 bytes"));
    let computed = crc32fast::hash(&file[..HEADER - 4]);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    let mut head = Reader::new(&file[12..HEADER - 4]);
    let (kind, _, _, _) = (head.u8()?, head.u8()?, head.u8()?, head.u8()?);
    let (saved_at, generation, count, body_len) =
        (head.u64()?, head.u64()?, head.u64()?, head.u64()?);
    let expected = body_len.saturating_add((HEADER + TRAILER) as u64);
    if found < expected {
        return Err(truncated(expected));
    }
    if found > expected {
        return Err(SnapshotError::Malformed(format!(
            "{} bytes after the end of the snapshot",
            found - expected
        )));
    }
    let body = &file[HEADER..file.len() - TRAILER];
    let stored = u32::from_le_bytes(file[file.len() - TRAILER..].try_into().expect("4 bytes"));
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    let kind = Kind::of(kind)
        .ok_or_else(|| SnapshotError::Malformed(format!("unknown kind of snapshot {kind}")))?;
    let mut body = Reader::new(body);
    let key_type = body.name()?;
    let value_type = body.name()?;
    Ok(Verified {
        header: Header {
            kind,
            saved_at,
            generation,
            count,
            key_type,
            value_type,
        },
        records: body,
    })
}

/// Reads little-endian fields off a verified file; running out is
/// [`SnapshotError::Malformed`] (a file whose checksum matched but whose
/// content does not parse), never a panic.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    /// Whether every byte was read.
    pub(super) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// How many bytes are left.
    pub(super) fn len(&self) -> usize {
        self.bytes.len()
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if self.bytes.len() < n {
            return Err(SnapshotError::Malformed(format!(
                "a field of {n} bytes where {} are left",
                self.bytes.len()
            )));
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    pub(super) fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>()?[0])
    }

    pub(super) fn u32(&mut self) -> Result<u32, SnapshotError> {
        self.array().map(u32::from_le_bytes)
    }

    pub(super) fn u64(&mut self) -> Result<u64, SnapshotError> {
        self.array().map(u64::from_le_bytes)
    }

    fn name(&mut self) -> Result<&'a str, SnapshotError> {
        let len = u16::from_le_bytes(self.array()?);
        std::str::from_utf8(self.take(usize::from(len))?)
            .map_err(|e| SnapshotError::Malformed(format!("a type name is not UTF-8: {e}")))
    }
}

/// Reads the file at `path`.
pub(super) fn read(path: &Path) -> Result<Vec<u8>, SnapshotError> {
    fs::read(path).map_err(|source| SnapshotError::io(path, source))
}

/// Writes `bytes` as the file at `path`, atomically: under a temporary name
/// in the same directory, flushed to disk, renamed over `path`, and the
/// directory flushed. On an error the temporary file is removed and the
/// file at `path`, if any, is as it was.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    /// Tells apart the temporary files of saves running at once.
    static SAVES: AtomicU64 = AtomicU64::new(0);
    let Some(name) = path.file_name() else {
        return Err(SnapshotError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"),
        ));
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(
        ".{}-{}.tmp",
        std::process::id(),
        SAVES.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = dir.join(temp_name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| SnapshotError::io(&temp, e))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| SnapshotError::io(&temp, e))?;
        drop(file);
        fs::rename(&temp, path).map_err(|e| SnapshotError::io(path, e))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
        return written;
    }
    sync_dir(&dir)
}

/// Flushes the directory entry of a rename to disk.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SnapshotError::io(dir, e))
}

/// Elsewhere a directory cannot be opened to be flushed: the rename is as
/// durable as the platform makes it.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), SnapshotError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header<'static> {
        Header {
            kind: Kind::Keys,
            saved_at: 7,
            generation: 3,
            count: 2,
            key_type: "u32",
            value_type: "",
        }
    }

    #[test]
    fn a_file_reads_back_as_written() {
        let file = encode(&header(), b"abcd");
        let verified = verify(&file).unwrap();
        assert_eq!(verified.header, header());
        let mut records = verified.records;
        assert_eq!(records.take(4).unwrap(), b"abcd");
        assert!(records.is_empty());
    }

    #[test]
    fn every_cut_and_every_flipped_byte_is_an_error() {
        let file = encode(&header(), b"some records");
        for len in 0..file.len() {
            assert!(verify(&file[..len]).is_err(), "cut at {len}");
        }
        for at in 0..file.len() {
            let mut bad = file.clone();
            bad[at] ^= 0x10;
            assert!(verify(&bad).is_err(), "flipped byte {at}");
        }
    }

    #[test]
    fn a_sealed_file_passes_its_checks_with_any_body() {
        let file = encode(&header(), b"abcd");
        let mut resealed = file.clone();
        seal(&mut resealed);
        assert_eq!(resealed, file, "encode ends with seal");
        // A byte changed and one added in the records: the checksums and
        // the length no longer match, until sealed again.
        let mut changed = file.clone();
        changed[HEADER + 10] ^= 1;
        changed.insert(HEADER + 11, b'!');
        assert!(verify(&changed).is_err());
        seal(&mut changed);
        let verified = verify(&changed).unwrap();
        assert_eq!(verified.header, header());
        assert_eq!(verified.records.len(), 5);
        // Too short to hold a header and a trailer: left as it is.
        let mut short = file[..HEADER + TRAILER - 1].to_vec();
        seal(&mut short);
        assert_eq!(short, file[..HEADER + TRAILER - 1]);
    }

    #[test]
    fn names_are_cut_at_char_boundaries() {
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(cut("abc", 9), "abc");
    }
}
