//! Adapters between byte streams and the blocking codec pipeline: a size
//! limit on input, and tokio channels seen as `Read` and `Write` so the same
//! pipeline serves files, in-memory buffers and gRPC streams.

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::error::LimitExceeded;

/// Fails with `FileTooLarge` once more than `limit` bytes have been read.
pub struct LimitedReader<R> {
    inner: R,
    remaining: u64,
    limit: u64,
}

impl<R> LimitedReader<R> {
    /// Limits `inner` to `limit` bytes.
    pub fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
        }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Read one byte past the limit to tell "exactly at" from "over".
        let allowed = buf
            .len()
            .min(usize::try_from(self.remaining.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..allowed])?;
        if n as u64 > self.remaining {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                LimitExceeded(self.limit),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Reads chunks that arrive on a channel, blocking the (codec) thread while
/// it waits. The channel closing is the end of input.
pub struct ChannelReader {
    chunks: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    /// Reads from `chunks`.
    pub fn new(chunks: mpsc::Receiver<Bytes>) -> Self {
        Self {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Collects output into chunks of about `chunk_size` bytes and sends each,
/// wrapped by `wrap`, on a bounded channel, blocking while the receiver is
/// behind (backpressure). A closed channel (the caller left) is a
/// `BrokenPipe` error, which stops the conversion.
pub struct ChannelWriter<T> {
    chunks: mpsc::Sender<T>,
    wrap: fn(Bytes) -> T,
    buffer: BytesMut,
    chunk_size: usize,
}

impl<T> ChannelWriter<T> {
    /// Writes to `chunks` in pieces of `chunk_size` bytes.
    pub fn new(chunks: mpsc::Sender<T>, chunk_size: usize, wrap: fn(Bytes) -> T) -> Self {
        Self {
            chunks,
            wrap,
            buffer: BytesMut::with_capacity(chunk_size),
            chunk_size,
        }
    }

    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = (self.wrap)(self.buffer.split().freeze());
        self.chunks
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "output receiver closed"))
    }
}

impl<T> Write for ChannelWriter<T> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= self.chunk_size {
            self.send_buffer()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_reader_allows_exactly_the_limit() {
        let mut out = Vec::new();
        LimitedReader::new(&[1u8; 10][..], 10)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len(), 10);
        let err = LimitedReader::new(&[1u8; 11][..], 10)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
    }

    #[test]
    fn channel_reader_and_writer_move_bytes_in_order() {
        let (tx, rx) = mpsc::channel(2);
        let writer = std::thread::spawn(move || {
            let mut w = ChannelWriter::new(tx, 4, |b| b);
            for i in 0..10u8 {
                w.write_all(&[i, i]).unwrap();
            }
            w.flush().unwrap();
        });
        let mut out = Vec::new();
        ChannelReader::new(rx).read_to_end(&mut out).unwrap();
        writer.join().unwrap();
        let expected: Vec<u8> = (0..10u8).flat_map(|i| [i, i]).collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn writer_reports_a_departed_receiver() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut w = ChannelWriter::new(tx, 1, |b| b);
        assert_eq!(w.write(&[1]).unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
