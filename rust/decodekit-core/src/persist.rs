//! The envelope of every saved table: `magic (8 bytes) | version (u32) | payload length (u64) | payload |
//! CRC-32 of everything before it (u32)`, little-endian. CRC-32 detects every error confined to 32
//! consecutive bits, so any single damaged byte is refused; a wrong length catches truncation.
//! Payloads are read through [`Reader`], whose every read is bounds-checked, so even bytes that pass the
//! checksum cannot make a loader panic or allocate without limit.

use crate::error::{CoreError, Result};

const HEADER: usize = 8 + 4 + 8;

/// Wrap `payload` in the envelope.
#[must_use]
pub fn seal(magic: &[u8; 8], version: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len() + 4);
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Check the envelope and return the payload. `what` names the table in messages.
pub fn open<'a>(bytes: &'a [u8], magic: &[u8; 8], version: u32, what: &str) -> Result<&'a [u8]> {
    let corrupt = |why: String| CoreError::CorruptState(format!("these bytes are not a valid {what}: {why}"));
    if bytes.len() < HEADER + 4 {
        return Err(corrupt(format!(
            "{} bytes is shorter than the header",
            bytes.len()
        )));
    }
    if &bytes[..8] != magic {
        return Err(corrupt("wrong magic number".into()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    if crc32fast::hash(body) != stored {
        return Err(corrupt("checksum mismatch (damaged or truncated)".into()));
    }
    let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if found != version {
        return Err(corrupt(format!(
            "format version {found}, this decodekit reads version {version}"
        )));
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    if len != (body.len() - HEADER) as u64 {
        return Err(corrupt(format!(
            "payload length {len} does not match the {} bytes present",
            body.len() - HEADER
        )));
    }
    Ok(&body[HEADER..])
}

/// Little-endian writer for payloads.
#[derive(Default)]
pub struct Writer {
    /// The bytes written so far.
    pub bytes: Vec<u8>,
}

impl Writer {
    /// Append a `u32`.
    pub fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// Append a `u64`.
    pub fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// Append an `f32`.
    pub fn f32(&mut self, v: f32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }
}

/// Bounds-checked little-endian reader; every failure is a [`CoreError::CorruptState`].
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    what: &'a str,
}

impl<'a> Reader<'a> {
    /// Read `bytes`, naming `what` in errors.
    #[must_use]
    pub fn new(bytes: &'a [u8], what: &'a str) -> Self {
        Self { bytes, at: 0, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() - self.at < n {
            return Err(self.corrupt("the payload ends early"));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    /// A `CorruptState` error naming the table.
    #[must_use]
    pub fn corrupt(&self, why: &str) -> CoreError {
        CoreError::CorruptState(format!("these bytes are not a valid {}: {why}", self.what))
    }

    /// Read a `u32`.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    /// Read a `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// Read an `f32`.
    pub fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    /// A count of items that each need at least `item_bytes` more bytes: refuses counts the remaining
    /// payload cannot hold, so a damaged count cannot trigger a huge allocation.
    pub fn count(&mut self, item_bytes: usize) -> Result<usize> {
        let n = self.u64()?;
        let left = (self.bytes.len() - self.at) as u64;
        if n.saturating_mul(item_bytes.max(1) as u64) > left {
            return Err(self.corrupt("a count exceeds the bytes present"));
        }
        Ok(n as usize)
    }

    /// Bytes not read yet.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// Require that every byte was consumed.
    pub fn finish(self) -> Result<()> {
        if self.at != self.bytes.len() {
            return Err(self.corrupt("unexpected trailing bytes"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_single_byte_change_is_refused() {
        let sealed = seal(b"DKTEST\0\0", 1, b"hello, tables");
        assert_eq!(open(&sealed, b"DKTEST\0\0", 1, "test").unwrap(), b"hello, tables");
        for i in 0..sealed.len() {
            for flip in [1u8, 0x80, 0xFF] {
                let mut bad = sealed.clone();
                bad[i] ^= flip;
                assert!(open(&bad, b"DKTEST\0\0", 1, "test").is_err(), "byte {i} ^ {flip}");
            }
        }
        for cut in 0..sealed.len() {
            assert!(open(&sealed[..cut], b"DKTEST\0\0", 1, "test").is_err());
        }
    }
}
