//! Reading an object as the CSV reader reads a file: from any offset, on a
//! blocking thread, a range at a time (a large object is never held whole,
//! and no one request has to stay open for the whole read).

use std::io::BufRead;
use std::ops::Range;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::{GetOptions, GetRange};
use tokio::runtime::Handle;

use super::ObjectUrl;
use pos_etl_formats::csv::Source;

/// Bytes asked for by one request.
const RANGE: u64 = 16 << 20;

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
        // The reader runs on a blocking thread of the runtime, where it may
        // wait for the runtime's requests.
        let handle = Handle::try_current().map_err(std::io::Error::other)?;
        Ok(Box::new(RangeReader { file: self, handle, next: offset, body: None, chunk: Bytes::new() }))
    }
}

/// Reads an object from an offset to its end, one ranged GET after another.
struct RangeReader<'a> {
    file: &'a ObjectFile,
    handle: Handle,
    /// Where the next range starts.
    next: u64,
    /// The body of the range being read.
    body: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    /// What is left of the body's last chunk.
    chunk: Bytes,
}

impl RangeReader<'_> {
    fn request(&self, range: Range<u64>) -> std::io::Result<BoxStream<'static, object_store::Result<Bytes>>> {
        let url = &self.file.url;
        let options = GetOptions { range: Some(GetRange::Bounded(range)), ..Default::default() };
        let got = self.handle.block_on(url.store.get_opts(&url.path, options));
        got.map(|result| result.into_stream()).map_err(|e| std::io::Error::other(url.error("cannot read", e)))
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
        while self.chunk.is_empty() {
            let body = match &mut self.body {
                Some(body) => body,
                None if self.next >= self.file.size => return Ok(&[]),
                None => {
                    let end = (self.next + RANGE).min(self.file.size);
                    let body = self.request(self.next..end)?;
                    self.next = end;
                    self.body.insert(body)
                }
            };
            match self.handle.block_on(body.next()) {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(self.file.url.error("cannot read", e))),
                None => self.body = None,
            }
        }
        Ok(&self.chunk)
    }

    fn consume(&mut self, amount: usize) {
        let _ = self.chunk.split_to(amount);
    }
}
