//! A bounds-checked reader over a byte slice, shared by the decoders of core's binary
//! formats (block chunk frames, binary shards): each names its own error for input that
//! ends early.

/// Reads a byte slice front to back; running past its end is the error `short` makes from
/// the position reached.
pub(crate) struct Cursor<'a, E> {
    data: &'a [u8],
    /// The next byte to read.
    pub(crate) pos: usize,
    short: fn(usize) -> E,
}

impl<'a, E> Cursor<'a, E> {
    pub(crate) fn new(data: &'a [u8], short: fn(usize) -> E) -> Self {
        Cursor {
            data,
            pos: 0,
            short,
        }
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], E> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| (self.short)(self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], E> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// How many bytes are left.
    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
}
