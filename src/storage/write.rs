//! Writing an object that appears only when the run commits: the bytes
//! written go up as the parts of a multipart upload while the run goes on,
//! and the upload is completed by [`StagedUpload::complete`] or aborted when
//! the upload is dropped. An upload never completed (the run failed, or was
//! killed) is not an object: readers keep seeing the previous one. Only an
//! output written to its end (its writer shut down) is completed.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use object_store::{ObjectStoreExt, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWrite, DuplexStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{ObjectUrl, StorageError};

/// Size of each part uploaded (S3 takes 5 MiB at least, but for the last).
const PART: usize = 16 << 20;
/// Parts uploading at once.
const PARTS_IN_FLIGHT: usize = 4;
/// Bytes the writer may be ahead of the upload.
const PIPE: usize = 1 << 20;
/// How long a failed run waits for its uploads to be aborted before it exits.
const ABORT_WITHIN: Duration = Duration::from_secs(10);

/// An upload in progress, completed or aborted by the run's commit.
#[derive(Debug)]
pub struct StagedUpload {
    url: ObjectUrl,
    complete: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), StorageError>>,
}

/// The writer of a [`StagedUpload`]; shut it down when everything is written.
#[derive(Debug)]
pub struct UploadWriter {
    pipe: DuplexStream,
    /// Why the upload stopped, once it has.
    failed: Arc<OnceLock<String>>,
    /// Set when the writer is shut down: everything was written.
    finished: Arc<AtomicBool>,
}

impl StagedUpload {
    /// Starts an upload of a new version of `url`.
    pub fn start(url: &ObjectUrl) -> (StagedUpload, UploadWriter) {
        let (pipe, reader) = tokio::io::duplex(PIPE);
        let (complete, completed) = oneshot::channel();
        let (failed, finished) = (Arc::new(OnceLock::new()), Arc::new(AtomicBool::new(false)));
        let task = tokio::spawn(upload(url.clone(), reader, completed, failed.clone(), finished.clone()));
        (StagedUpload { url: url.clone(), complete: Some(complete), task }, UploadWriter { pipe, failed, finished })
    }

    /// Completes the upload: the object appears (or replaces the previous one).
    pub async fn complete(mut self) -> Result<(), StorageError> {
        let _ = self.complete.take().expect("completed once").send(());
        match (&mut self.task).await {
            Ok(result) => result,
            Err(error) => Err(self.url.error("cannot write", object_store::Error::JoinError { source: error })),
        }
    }
}

impl Drop for StagedUpload {
    fn drop(&mut self) {
        // Without the signal to complete, the task aborts the upload. The
        // run waits for that (a while at most), since it exits right after
        // and would leave the parts in the store, invisible to readers but
        // kept until a lifecycle rule deletes them.
        if self.complete.take().is_none() {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current()
            && handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        {
            let task = &mut self.task;
            let _ = tokio::task::block_in_place(|| handle.block_on(tokio::time::timeout(ABORT_WITHIN, task)));
        }
    }
}

/// Uploads what comes through `reader` in parts, then completes the upload
/// when `completed` says so, or aborts it.
async fn upload(
    url: ObjectUrl,
    mut reader: DuplexStream,
    completed: oneshot::Receiver<()>,
    failed: Arc<OnceLock<String>>,
    finished: Arc<AtomicBool>,
) -> Result<(), StorageError> {
    let result = async {
        let parts = url.store.put_multipart(&url.path).await.map_err(|e| url.error("cannot write", e))?;
        let mut parts = WriteMultipart::new_with_chunk_size(parts, PART);
        let mut buffer = vec![0; PIPE];
        loop {
            let read = match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            if let Err(e) = parts.wait_for_capacity(PARTS_IN_FLIGHT).await {
                return Err(url.error("cannot write", e));
            }
            parts.write(&buffer[..read]);
        }
        match completed.await {
            Ok(()) if finished.load(Ordering::Acquire) => parts.finish().await.map(drop).map_err(|e| url.error("cannot write", e)),
            Ok(()) => {
                let _ = parts.abort().await;
                let stopped = std::io::Error::other("the output was not written to its end");
                Err(url.error("cannot write", object_store::Error::Generic { store: "pos-etl", source: Box::new(stopped) }))
            }
            Err(_) => {
                let _ = parts.abort().await;
                Ok(())
            }
        }
    }
    .await;
    if let Err(error) = &result {
        let _ = failed.set(format!("{error}: {}", error.source));
    }
    result
}

impl UploadWriter {
    /// The upload's error in place of the pipe's, which only says it closed.
    fn explain(&self, error: std::io::Error) -> std::io::Error {
        match self.failed.get() {
            Some(reason) => std::io::Error::other(reason.clone()),
            None => error,
        }
    }
}

impl AsyncWrite for UploadWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.pipe).poll_write(cx, buf);
        polled.map_err(|e| self.explain(e))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.pipe).poll_flush(cx);
        polled.map_err(|e| self.explain(e))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.pipe).poll_shutdown(cx);
        if let Poll::Ready(Ok(())) = polled {
            self.finished.store(true, Ordering::Release);
        }
        polled.map_err(|e| self.explain(e))
    }
}
