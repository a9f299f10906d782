//! Reading an object as the CSV reader reads a file: from any offset, on a
//! blocking thread, a range at a time (a large object is never held whole,
//! and no one request has to stay open for the whole read), the next range
//! requested while the current one is parsed.

use std::io::BufRead;

use bytes::Bytes;
use object_store::ObjectStoreExt;
use tokio::task::JoinHandle;

use super::ObjectUrl;
use pos_etl_formats::csv::Source;

/// Bytes asked for by one request.
const RANGE: u64 = 16 << 20;
/// Bytes asked for by the first request: enough for a header, which is
/// often all a reader wants.
const FIRST_RANGE: u64 = 256 << 10;

/// An object of a known size, read as a CSV [`Source`].
#[derive(Debug, Clone)]
pub struct ObjectFile {
    /// The object.
    pub url: ObjectUrl,
    /// Its size when it was listed; bytes appended later are not read.
    pub size: u64,
}

impl Source for ObjectFile {
    fn name(&self) -> String {
        self.url.to_string()
    }

    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn BufRead + Send + '_>> {
        Ok(Box::new(RangeReader { file: self, next: offset, current: Bytes::new(), pending: None, requested: 0 }))
    }
}

/// Reads an object from an offset to its end, one ranged GET after another.
struct RangeReader<'a> {
    file: &'a ObjectFile,
    /// Where the next range starts.
    next: u64,
    /// What is left of the range being read.
    current: Bytes,
    /// The request of the next range, sent ahead.
    pending: Option<JoinHandle<object_store::Result<Bytes>>>,
    /// Ranges requested so far.
    requested: u32,
}

impl RangeReader<'_> {
    /// Sends the request of the next range, if any is left.
    fn request_next(&mut self) {
        if self.next >= self.file.size {
            return;
        }
        let length = if self.requested == 0 { FIRST_RANGE } else { RANGE };
        self.requested += 1;
        let end = (self.next + length).min(self.file.size);
        let url = self.file.url.clone();
        let range = self.next..end;
        self.pending = Some(super::io_runtime().spawn(async move { url.store.get_range(&url.path, range).await }));
        self.next = end;
    }
}

impl std::io::Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for RangeReader<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.current.is_empty() {
            if self.pending.is_none() {
                self.request_next();
            }
            let Some(pending) = self.pending.take() else {
                return Ok(&[]);
            };
            // The reader runs on a blocking thread, which may wait for the request.
            let got = super::io_runtime().block_on(pending).map_err(std::io::Error::other)?;
            self.current = got.map_err(|e| std::io::Error::other(self.file.url.error("cannot read", e)))?;
            self.request_next();
        }
        Ok(&self.current)
    }

    fn consume(&mut self, amount: usize) {
        let _ = self.current.split_to(amount);
    }
}

impl Drop for RangeReader<'_> {
    fn drop(&mut self) {
        // A reader that stops early (a header read) does not fetch the rest.
        if let Some(pending) = self.pending.take() {
            pending.abort();
        }
    }
}
