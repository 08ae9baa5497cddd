//! Plugin bytes as they arrive: size caps, gzip, sha256 digest, and what kind of wasm they are.

use std::io::Read;

use super::{digest::Digest, error::Error};

/// Largest plugin accepted as stored (a ConfigMap holds at most 1 MiB).
pub(crate) const MAX_STORED_BYTES: usize = 1024 * 1024;
/// Largest plugin accepted once decompressed.
pub(crate) const MAX_WASM_BYTES: usize = 8 * 1024 * 1024;

const WASM_MAGIC: &[u8; 4] = b"\0asm";
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
const CORE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Plugin bytes, decompressed and checked to be a WebAssembly component.
#[derive(Debug, Clone)]
pub struct WasmBytes {
    /// The component.
    pub wasm: Vec<u8>,
    /// sha256 of `wasm`.
    pub digest: Digest,
    /// Size as stored (compressed, if it was).
    pub stored_size: usize,
    /// Whether the stored bytes were gzip-compressed.
    pub compressed: bool,
}

/// Decompresses (when gzip) and checks plugin bytes.
///
/// # Errors
/// [`Error::TooLarge`] above the stored or decompressed cap, [`Error::Decompress`] for broken
/// gzip, [`Error::CoreModule`] for a core module, [`Error::NotWasm`] for anything else that is
/// not a component.
pub(crate) fn prepare(stored: &[u8]) -> Result<WasmBytes, Error> {
    if stored.len() > MAX_STORED_BYTES {
        return Err(Error::TooLarge {
            what: "stored plugin",
            size: stored.len(),
            limit: MAX_STORED_BYTES,
        });
    }
    let compressed = stored.starts_with(&GZIP_MAGIC);
    let wasm = if compressed {
        let mut out = Vec::new();
        let mut reader = flate2::read::GzDecoder::new(stored).take(MAX_WASM_BYTES as u64 + 1);
        reader.read_to_end(&mut out).map_err(|e| Error::Decompress {
            reason: e.to_string(),
        })?;
        if out.len() > MAX_WASM_BYTES {
            return Err(Error::TooLarge {
                what: "decompressed plugin",
                size: out.len(),
                limit: MAX_WASM_BYTES,
            });
        }
        out
    } else {
        stored.to_vec()
    };
    check_header(&wasm)?;
    Ok(WasmBytes {
        digest: Digest::of(&wasm),
        stored_size: stored.len(),
        compressed,
        wasm,
    })
}

fn check_header(wasm: &[u8]) -> Result<(), Error> {
    if wasm.len() < 8 || &wasm[..4] != WASM_MAGIC {
        return Err(Error::NotWasm {
            reason: "it does not start with the WebAssembly magic bytes".to_string(),
        });
    }
    let version: [u8; 4] = wasm[4..8].try_into().expect("8 bytes checked");
    match version {
        COMPONENT_VERSION => Ok(()),
        CORE_VERSION => Err(Error::CoreModule),
        other => Err(Error::NotWasm {
            reason: format!("unknown WebAssembly version/layer {other:02x?}"),
        }),
    }
}

/// Compresses `wasm` with gzip at the best level.
pub fn gzip(wasm: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(wasm).expect("writing to memory cannot fail");
    encoder.finish().expect("writing to memory cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00rest";

    #[test]
    fn gzip_is_undone_and_the_digest_covers_the_decompressed_bytes() {
        let prepared = prepare(&gzip(COMPONENT)).unwrap();
        assert!(prepared.compressed);
        assert_eq!(prepared.wasm, COMPONENT);
        assert_eq!(prepared.digest, Digest::of(COMPONENT));
    }

    #[test]
    fn a_core_module_is_told_apart_from_garbage() {
        assert!(matches!(
            prepare(b"\0asm\x01\x00\x00\x00"),
            Err(Error::CoreModule)
        ));
        assert!(matches!(prepare(b"hello world"), Err(Error::NotWasm { .. })));
    }

    #[test]
    fn a_decompression_bomb_is_stopped_at_the_cap() {
        let mut bomb = COMPONENT.to_vec();
        bomb.resize(MAX_WASM_BYTES + 10, 0);
        let err = prepare(&gzip(&bomb)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooLarge {
                    what: "decompressed plugin",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn stored_bytes_over_a_mebibyte_are_refused() {
        let err = prepare(&vec![0u8; MAX_STORED_BYTES + 1]).unwrap_err();
        assert!(matches!(
            err,
            Error::TooLarge {
                what: "stored plugin",
                ..
            }
        ));
    }
}
