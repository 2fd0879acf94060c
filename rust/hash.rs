//! Hashing: BLAKE3 of bytes, and of files (memory-mapped and multithreaded, so a GGUF
//! of hundreds of megabytes hashes at memory speed).

use std::path::Path;

/// BLAKE3 of `data`, as 64 lowercase hex digits.
pub fn blake3_hex(data: &[u8]) -> String {
    if data.len() >= 1 << 20 {
        let mut h = blake3::Hasher::new();
        h.update_rayon(data);
        return h.finalize().to_hex().to_string();
    }
    blake3::hash(data).to_hex().to_string()
}

/// BLAKE3 of a file's contents, as 64 lowercase hex digits.
///
/// # Errors
/// The I/O error of opening or reading the file.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(path)?;
    Ok(h.finalize().to_hex().to_string())
}
