//! TDengine's `tEncoder` primitives (`include/util/tencode.h`, `source/util/src/tencode.c`) and
//! CRC-32C, written from `docs/wal-format.md`.

/// An encoder producing TDengine's tEncoder byte stream.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
    blocks: Vec<usize>,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// The bytes written (every block must be closed).
    pub fn finish(self) -> Vec<u8> {
        assert!(self.blocks.is_empty(), "unclosed tEncoder block");
        self.buf
    }

    /// Raw bytes, verbatim.
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// Fixed little-endian `i8`.
    pub fn i8(&mut self, v: i8) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// Fixed little-endian `u8`.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.raw(&[v])
    }

    /// Fixed little-endian `i16`.
    pub fn i16(&mut self, v: i16) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// Fixed little-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// Fixed little-endian `i32`.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// Fixed little-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// Fixed little-endian `i64`.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// Fixed little-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// LEB128 unsigned varint (`tEncodeU64v`, also u16v/u32v).
    pub fn uv(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
        self
    }

    /// Zigzag + LEB128 signed varint (`tEncodeI64v`, also i16v/i32v).
    pub fn iv(&mut self, v: i64) -> &mut Self {
        self.uv(((v << 1) ^ (v >> 63)) as u64)
    }

    /// `tEncodeBinary`: `u32v len` + bytes.
    pub fn binary(&mut self, b: &[u8]) -> &mut Self {
        self.uv(b.len() as u64).raw(b)
    }

    /// `tEncodeCStr`: binary of the string with its terminating NUL.
    pub fn cstr(&mut self, s: &str) -> &mut Self {
        self.uv(s.len() as u64 + 1).raw(s.as_bytes()).u8(0)
    }

    /// `tStartEncode`: opens a nested block (`i32 len` placeholder).
    pub fn start(&mut self) -> &mut Self {
        self.blocks.push(self.buf.len());
        self.buf.extend_from_slice(&[0; 4]);
        self
    }

    /// `tEndEncode`: closes the innermost block, filling in its length.
    pub fn end(&mut self) -> &mut Self {
        let at = self.blocks.pop().expect("tEncoder end without start");
        let len = (self.buf.len() - at - 4) as i32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: deliberately not the
/// reader's implementation.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn varints_and_blocks() {
        let mut e = Encoder::new();
        e.uv(300).iv(-1).iv(1).start().i32(7).end().cstr("ab");
        assert_eq!(
            e.finish(),
            vec![
                0xAC, 0x02, 0x01, 0x02, 4, 0, 0, 0, 7, 0, 0, 0, 3, b'a', b'b', 0
            ]
        );
    }
}
