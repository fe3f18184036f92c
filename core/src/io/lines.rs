//! Bounded line reading: a line longer than the limit is an error, and its
//! bytes are skipped without being held in memory.

use std::io::{self, BufRead};

/// One line read by [`read_line_bounded`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line (without its `\n`) of at most the limit, in the caller's buffer.
    Ok,
    /// A line longer than the limit; its bytes were consumed and dropped. The
    /// total length is given.
    TooLong(u64),
    /// End of input.
    Eof,
}

/// Read the next line into `buf` (cleared first), keeping at most `max` bytes.
/// Returns the line kind and the number of bytes consumed (newline included).
pub fn read_line_bounded<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<(Line, u64)> {
    buf.clear();
    let mut consumed: u64 = 0;
    let mut overflow = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            let kind = if consumed == 0 {
                Line::Eof
            } else if overflow {
                Line::TooLong(consumed)
            } else {
                Line::Ok
            };
            return Ok((kind, consumed));
        }
        let (chunk, done) = match memchr_nl(avail) {
            Some(i) => (&avail[..i], Some(i + 1)),
            None => (avail, None),
        };
        if !overflow {
            if buf.len() + chunk.len() > max {
                overflow = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let n = done.unwrap_or(avail.len());
        r.consume(n);
        consumed += n as u64;
        if done.is_some() {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            let kind = if overflow {
                Line::TooLong(consumed - 1)
            } else {
                Line::Ok
            };
            return Ok((kind, consumed));
        }
    }
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_bounds_long_ones() {
        let data = b"ab\r\ncdefgh\nij";
        let mut r = io::BufReader::with_capacity(3, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4).unwrap(),
            (Line::Ok, 4)
        );
        assert_eq!(buf, b"ab");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4).unwrap(),
            (Line::TooLong(6), 7)
        );
        assert!(buf.is_empty());
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4).unwrap(),
            (Line::Ok, 2)
        );
        assert_eq!(buf, b"ij");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4).unwrap(),
            (Line::Eof, 0)
        );
    }
}
