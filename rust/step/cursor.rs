//! [`Cursor`]: how far a batch of iovecs has been written, across partial writes. Every
//! writer that frames PDUs into a batch of pieces (headers, and slices of a command, a mapping
//! or a buffer) keeps one.

use std::io::IoSlice;

use super::MAX_IOVECS;

/// The next byte to write of a batch of pieces: the piece, and the offset in it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub piece: usize,
    pub offset: usize,
}

impl Cursor {
    /// The iovecs left of `pieces` (at most [`MAX_IOVECS`]), the first from where the last
    /// write stopped; `bytes` gives a piece's bytes.
    pub fn iov<'a, P: Copy>(
        &self,
        pieces: &[P],
        bytes: impl Fn(P) -> &'a [u8],
    ) -> Vec<IoSlice<'a>> {
        pieces[self.piece..]
            .iter()
            .take(MAX_IOVECS)
            .enumerate()
            .map(|(i, piece)| {
                let bytes = bytes(*piece);
                IoSlice::new(if i == 0 { &bytes[self.offset..] } else { bytes })
            })
            .collect()
    }

    /// Move over `n` written bytes, across as many pieces as they cover; `len(i)` is piece
    /// `i`'s length.
    pub fn advance(&mut self, mut n: usize, len: impl Fn(usize) -> usize) {
        while n > 0 {
            let left = len(self.piece) - self.offset;
            let take = left.min(n);
            n -= take;
            self.offset += take;
            if take == left {
                self.piece += 1;
                self.offset = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_writes_resume_inside_a_piece() {
        let pieces: [&[u8]; 3] = [b"abc", b"de", b"fghi"];
        let mut cursor = Cursor::default();
        let mut written = Vec::new();
        for n in [2, 2, 0, 4, 1] {
            let iov = cursor.iov(&pieces, |p| p);
            let flat: Vec<u8> = iov.iter().flat_map(|s| s.iter().copied()).collect();
            written.extend_from_slice(&flat[..n]);
            cursor.advance(n, |i| pieces[i].len());
        }
        assert_eq!(written, b"abcdefghi");
        assert_eq!(
            cursor,
            Cursor {
                piece: 3,
                offset: 0
            }
        );
        assert!(cursor.iov(&pieces, |p| p).is_empty());
    }

    #[test]
    fn at_most_max_iovecs_at_once() {
        let pieces = vec![&b"x"[..]; MAX_IOVECS + 5];
        let mut cursor = Cursor::default();
        assert_eq!(cursor.iov(&pieces, |p| p).len(), MAX_IOVECS);
        cursor.advance(MAX_IOVECS, |i| pieces[i].len());
        assert_eq!(cursor.iov(&pieces, |p| p).len(), 5);
    }
}
