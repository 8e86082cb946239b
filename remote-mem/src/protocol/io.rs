//! Vectored socket I/O helpers: send a header and a page with one `writev`
//! and receive them with one `readv`, so a 4 KiB page is neither copied into a
//! staging buffer nor split over two system calls in the common case.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};

/// Writes every byte of `bufs`, retrying on partial writes (std's
/// `write_all_vectored` is not stable).
pub fn write_all_vectored<W: Write + ?Sized>(
    w: &mut W,
    mut bufs: &mut [IoSlice<'_>],
) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fills every buffer in `bufs`, retrying on short reads. EOF before the end
/// is `UnexpectedEof`.
pub fn read_exact_vectored<R: Read + ?Sized>(
    r: &mut R,
    mut bufs: &mut [IoSliceMut<'_>],
) -> io::Result<()> {
    IoSliceMut::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match r.read_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => IoSliceMut::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most 3 bytes per call, to exercise partial writes.
    struct Trickle(Vec<u8>);
    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = b.len().min(3);
            self.0.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_vectored_io_completes() {
        let mut w = Trickle(Vec::new());
        write_all_vectored(
            &mut w,
            &mut [
                IoSlice::new(b"hello"),
                IoSlice::new(b""),
                IoSlice::new(b"world"),
            ],
        )
        .unwrap();
        assert_eq!(w.0, b"helloworld");
        let mut src: &[u8] = b"helloworld!";
        let (mut a, mut b) = ([0u8; 4], [0u8; 6]);
        read_exact_vectored(
            &mut src,
            &mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)],
        )
        .unwrap();
        assert_eq!((&a, &b), (b"hell", b"oworld"));
        let mut short: &[u8] = b"ab";
        let e = read_exact_vectored(&mut short, &mut [IoSliceMut::new(&mut a)]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
