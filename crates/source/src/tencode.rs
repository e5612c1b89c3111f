//! A bounds-checked reader of TDengine's `tEncoder` streams (`include/util/tencode.h`):
//! fixed-width little-endian integers, LEB128 and zigzag varints, `cstr`s and nested blocks.
//! The WAL feed decodes message bodies with it (`wal::decode`), the `tmq` feed the raw form
//! of data messages (`tmq::data_rsp`). Every read is checked against the buffer: a short or
//! hostile input is an error, never a panic.

/// A bounds-checked reader of tEncoder streams.
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    /// The next byte to read (the WAL decoder steps back to re-read a row).
    pub(crate) pos: usize,
}

pub(crate) type DecResult<T> = Result<T, String>;

impl<'a> Dec<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Dec { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> DecResult<&'a [u8]> {
        match self.pos.checked_add(n).filter(|&e| e <= self.buf.len()) {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!(
                "body too short: {n} bytes needed at offset {} of {}",
                self.pos,
                self.buf.len()
            )),
        }
    }

    pub(crate) fn arr<const N: usize>(&mut self) -> DecResult<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn skip(&mut self, n: usize) -> DecResult<()> {
        self.take(n).map(|_| ())
    }

    pub(crate) fn i8(&mut self) -> DecResult<i8> {
        Ok(i8::from_le_bytes(self.arr()?))
    }

    pub(crate) fn u8(&mut self) -> DecResult<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn i32(&mut self) -> DecResult<i32> {
        Ok(i32::from_le_bytes(self.arr()?))
    }

    pub(crate) fn u32(&mut self) -> DecResult<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }

    pub(crate) fn i64(&mut self) -> DecResult<i64> {
        Ok(i64::from_le_bytes(self.arr()?))
    }

    /// LEB128 (`tDecodeU64v`).
    pub(crate) fn uv(&mut self) -> DecResult<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            v |= u64::from(b & 0x7F) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(format!(
            "varint longer than 10 bytes at offset {}",
            self.pos
        ))
    }

    /// Zigzag LEB128 (`tDecodeI64v`, also i32v/i16v).
    pub(crate) fn iv(&mut self) -> DecResult<i64> {
        let u = self.uv()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    pub(crate) fn count(&mut self, v: i64, what: &str) -> DecResult<usize> {
        usize::try_from(v)
            .ok()
            .filter(|&n| n <= self.buf.len())
            .ok_or_else(|| format!("impossible {what} {v} at offset {}", self.pos))
    }

    /// `tDecodeCStr`: u32v length (with the NUL) + bytes.
    pub(crate) fn cstr(&mut self) -> DecResult<String> {
        let len = self.uv()?;
        let len = self.count(len as i64, "string length")?;
        let b = self.take(len)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec()).map_err(|_| format!("name is not UTF-8: {b:?}"))
    }

    /// `tStartDecode`: the nested block's content; `self` moves past it (`tEndDecode`).
    pub(crate) fn block(&mut self) -> DecResult<Dec<'a>> {
        let len = self.i32()?;
        let len = self.count(i64::from(len), "block length")?;
        Ok(Dec::new(self.take(len)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut d = Dec::new(&[0xAC, 0x02, 0x01, 0x02, 0x03]);
        assert_eq!(d.uv().unwrap(), 300);
        assert_eq!(d.iv().unwrap(), -1);
        assert_eq!(d.iv().unwrap(), 1);
        assert_eq!(d.iv().unwrap(), -2);
        assert!(d.uv().is_err());
    }
}
