//! A file written under a temporary name beside its target, through
//! object_store, and renamed over the target only on commit, so that the
//! previous file survives any failure of the run, `kill -9` included. A
//! staged file dropped without a commit is deleted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;

use crate::error::SinkError;

/// An output being written to `<target>.tmp`.
#[derive(Debug)]
pub struct StagedFile {
    store: Arc<LocalFileSystem>,
    temporary: ObjectPath,
    target: ObjectPath,
    display: PathBuf,
    /// The temporary file on disk, removed on drop unless committed.
    local_temporary: Option<PathBuf>,
}

impl StagedFile {
    /// Prepares to write `target` (its directory is created if missing).
    pub fn new(target: &Path) -> Result<Self, SinkError> {
        let write_error = |source: Box<dyn std::error::Error + Send + Sync>| SinkError::Write {
            path: target.display().to_string(),
            source,
        };
        let absolute = std::path::absolute(target).map_err(|e| write_error(e.into()))?;
        let mut temporary_name = absolute.clone().into_os_string();
        temporary_name.push(".tmp");
        let to_object_path =
            |path: &Path| ObjectPath::from_absolute_path(path).map_err(|e| write_error(e.into()));
        Ok(StagedFile {
            store: Arc::new(LocalFileSystem::new()),
            temporary: to_object_path(Path::new(&temporary_name))?,
            target: to_object_path(&absolute)?,
            display: target.to_path_buf(),
            local_temporary: Some(PathBuf::from(temporary_name)),
        })
    }

    /// A buffered writer to the temporary file (multipart, so memory stays bounded).
    pub fn writer(&self) -> BufWriter {
        BufWriter::with_capacity(self.store.clone(), self.temporary.clone(), 8 << 20)
    }

    /// Writes `bytes` to the temporary file in one piece.
    pub async fn put(&self, bytes: Vec<u8>) -> Result<(), SinkError> {
        self.store
            .put(&self.temporary, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// Replaces the target with the temporary file.
    pub async fn commit(mut self) -> Result<(), SinkError> {
        self.store.rename(&self.temporary, &self.target).await.map_err(|e| self.error(e))?;
        self.local_temporary = None;
        Ok(())
    }

    fn error(&self, source: object_store::Error) -> SinkError {
        SinkError::Write { path: self.display.display().to_string(), source: source.into() }
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if let Some(path) = &self.local_temporary {
            // Nothing may have been written yet; and a failed run has a better error to report.
            let _ = std::fs::remove_file(path);
        }
    }
}
