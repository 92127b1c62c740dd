//! zlib, as pymemcache's `CompressedSerde` and python-memcached compress
//! (their default `zlib.compress`, read by `zlib.decompress`).

use std::io::{Read, Write};

use super::CodecError;

/// `data` compressed, or `None` when that is not shorter.
pub(super) fn compress(data: &[u8]) -> Result<Option<Vec<u8>>, CodecError> {
    let mut encoder = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(data.len() / 2),
        flate2::Compression::default(),
    );
    let compressed = encoder
        .write_all(data)
        .and_then(|()| encoder.finish())
        .map_err(|e| CodecError::Encode(format!("zlib: {e}")))?;
    Ok((compressed.len() < data.len()).then_some(compressed))
}

/// Inflates zlib `data`, reading at most one byte past `limit` so a small
/// bomb cannot expand without bound.
pub(super) fn inflate(data: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take((limit as u64).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| CodecError::Compression(e.to_string()))?;
    if out.len() > limit {
        return Err(CodecError::TooLarge { limit });
    }
    Ok(out)
}
