//! Everything a run writes, committed together. Each file is written under a
//! unique temporary name beside its target (so that two runs, or two outputs
//! of one run, never share one), and only [`Commit::commit`] puts the files
//! in place: it syncs every one to disk, renames each over its target, then
//! syncs the directories. A run that fails, or is killed, before that leaves
//! every previous file as it was; a staged file that is never committed is
//! deleted when the commit is dropped (or, after `kill -9`, left as a hidden
//! `.<name>.<random>.tmp` beside its target). A staged file is written
//! around the page cache where its filesystem allows ([`DirectWriter`]).
//!
//! A run that loads PostgreSQL tables attaches its open transaction
//! ([`PgLoad`]): the commit swaps the tables in and commits it first, then
//! renames the files, so a failed database commit changes no file.
//!
//! An output in an object store is uploaded in parts as it is written and
//! appears when the commit completes its upload ([`StagedUpload`]); a small
//! one (rejects, the summary) is put whole at the commit.
//!
//! A Delta table of a batch run gets its data files as the run goes, and
//! the commit adds them to its log, replacing the table's rows, in the
//! order it was staged. An incremental run's Delta tables and checkpoint
//! ([`DeltaLoad`]) are committed after the PostgreSQL tables and before
//! the files.
//!
//! One rename is atomic; a set of them is not. A crash in the middle of the
//! renames (power loss, `kill -9` at that instant) leaves the files renamed so
//! far new and the others old. The renames follow the order the files were
//! staged, so the one staged last – the summary JSON – is new only if every
//! other file is.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use object_store::ObjectStoreExt;

use tempfile::NamedTempFile;

use crate::error::SinkError;
use crate::sinks::delta::state::DeltaLoad;
use crate::sinks::delta::{CommitKind, DeltaTarget, SharedWriter, Stamp};
use crate::sinks::direct::DirectWriter;
use crate::sinks::postgres::PgLoad;
use crate::sinks::state::StateStore;
use crate::storage::write::{StagedUpload, UploadWriter};
use crate::storage::{Location, ObjectUrl};

/// A writer to a staged file.
pub type StagedWriter = DirectWriter;

/// The files one run writes, staged until they are committed together.
#[derive(Debug)]
pub struct Commit {
    staged: Vec<Staged>,
    durable: bool,
    postgres: Option<PgLoad>,
    delta: Option<DeltaLoad>,
}

/// One output of the commit, in the order it was staged.
#[derive(Debug)]
enum Staged {
    File(StagedFile),
    Upload(StagedUpload),
    Put(ObjectUrl, Vec<u8>),
    Delta(DeltaTarget, SharedWriter),
}

#[derive(Debug)]
struct StagedFile {
    temporary: NamedTempFile,
    /// Where the file goes: the output named, or the file its symbolic link points to.
    target: PathBuf,
    /// The output as the user named it, for messages.
    display: PathBuf,
}

impl Commit {
    /// A commit of outputs: synced to disk before they replace anything.
    pub fn new() -> Self {
        Commit { staged: Vec::new(), durable: true, postgres: None, delta: None }
    }

    /// A commit of scratch files only this run reads: not synced, since a
    /// crash leaves nothing anyone uses.
    pub fn scratch() -> Self {
        Commit { staged: Vec::new(), durable: false, postgres: None, delta: None }
    }

    /// Makes the tables of `load` part of this commit.
    pub fn attach(&mut self, load: PgLoad) {
        self.postgres = Some(load);
    }

    /// The PostgreSQL transaction of the run, if it loads tables.
    pub fn postgres(&mut self) -> Option<&mut PgLoad> {
        self.postgres.as_mut()
    }

    /// Makes the Delta tables and checkpoint of the incremental run `load`
    /// part of this commit.
    pub fn attach_delta(&mut self, load: DeltaLoad) {
        self.delta = Some(load);
    }

    /// Where the incremental run of this commit keeps its checkpoint.
    pub fn state(&mut self) -> Option<StateStore<'_>> {
        match (&mut self.postgres, &mut self.delta) {
            (Some(load), _) => Some(StateStore::Postgres(load)),
            (None, Some(load)) => Some(StateStore::Delta(load)),
            (None, None) => None,
        }
    }

    /// The writer of the Delta table at `target`: the incremental run's,
    /// or a new version of the table, staged to replace it.
    pub fn stage_delta(&mut self, target: &DeltaTarget) -> SharedWriter {
        if let Some(writer) = self.delta.as_ref().and_then(|load| load.writer(target)) {
            return writer;
        }
        let writer = target.writer();
        self.staged.push(Staged::Delta(target.clone(), writer.clone()));
        writer
    }

    /// Stages a new version of `target` and returns a writer to it. The
    /// target's directory is created if missing; a target that is a symbolic
    /// link is written through to the file it points to, and an existing
    /// target's permissions are kept.
    pub fn stage(&mut self, target: &Path) -> Result<StagedWriter, SinkError> {
        let file = self.stage_file(target)?;
        let handle = file.temporary.as_file().try_clone().map_err(|e| write_error(target, e))?;
        Ok(DirectWriter::new(handle))
    }

    /// Starts the upload of a new version of the object `target` and returns
    /// a writer to it; the object appears when the commit completes.
    pub fn stage_object(&mut self, target: &ObjectUrl) -> UploadWriter {
        let (upload, writer) = StagedUpload::start(target);
        self.staged.push(Staged::Upload(upload));
        writer
    }

    /// Stages `bytes` as the new version of `target`.
    pub fn put(&mut self, target: &Location, bytes: &[u8]) -> Result<(), SinkError> {
        match target {
            Location::Local(path) => {
                let file = self.stage_file(path)?;
                file.temporary.as_file().write_all(bytes).map_err(|e| write_error(path, e))
            }
            Location::Object(url) => {
                self.staged.push(Staged::Put(url.clone(), bytes.to_vec()));
                Ok(())
            }
        }
    }

    fn stage_file(&mut self, target: &Path) -> Result<&mut StagedFile, SinkError> {
        let error = |e| write_error(target, e);
        let resolved = resolve_links(target).map_err(error)?;
        let existing = match std::fs::metadata(&resolved) {
            Ok(meta) if meta.is_dir() => {
                return Err(error(std::io::Error::new(std::io::ErrorKind::IsADirectory, "it is a directory")));
            }
            Ok(meta) => Some(meta.permissions()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(error(e)),
        };
        let dir = parent_dir(&resolved);
        std::fs::create_dir_all(dir).map_err(error)?;
        let name = resolved.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temporary = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            // A new output gets the mode any new file gets (0666 less the umask).
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(error)?;
        if let Some(permissions) = existing {
            temporary.as_file().set_permissions(permissions).map_err(error)?;
        }
        self.staged.push(Staged::File(StagedFile { temporary, target: resolved, display: target.to_path_buf() }));
        match self.staged.last_mut() {
            Some(Staged::File(file)) => Ok(file),
            _ => unreachable!("a file was just staged"),
        }
    }

    /// Commits the PostgreSQL tables, if any, then puts every staged file
    /// and object in place, in the order they were staged.
    pub async fn commit(mut self) -> Result<(), SinkError> {
        if let Some(load) = self.postgres.take() {
            load.commit().await?;
        }
        if let Some(load) = self.delta.take() {
            load.commit().await?;
        }
        let (staged, durable) = (std::mem::take(&mut self.staged), self.durable);
        let staged = if durable {
            tokio::task::spawn_blocking(move || sync_files(staged)).await.expect("the sync task panicked")?
        } else {
            staged
        };
        let mut dirs: Vec<PathBuf> = Vec::new();
        for item in staged {
            match item {
                Staged::File(file) => {
                    let dir = parent_dir(&file.target).to_path_buf();
                    file.temporary.persist(&file.target).map_err(|e| write_error(&file.display, e.error))?;
                    if !dirs.contains(&dir) {
                        dirs.push(dir);
                    }
                }
                Staged::Upload(upload) => upload.complete().await?,
                Staged::Put(url, bytes) => {
                    url.store.put(&url.path, bytes.into()).await.map_err(|e| url.error("cannot write", e))?;
                }
                Staged::Delta(target, writer) => {
                    // A full run: incremental runs into the table start over.
                    let stamp = Stamp { transactions: Vec::new(), pos_etl: serde_json::json!({"mode": "full"}) };
                    target.commit(&target.open().await?, &writer, CommitKind::Replace, stamp).await?;
                }
            }
        }
        if durable {
            // The renames are entries of the directories: durable once they are synced.
            tokio::task::spawn_blocking(move || {
                dirs.iter().try_for_each(|dir| File::open(dir).and_then(|d| d.sync_all()).map_err(|e| write_error(dir, e)))
            })
            .await
            .expect("the sync task panicked")?;
        }
        Ok(())
    }
}

/// Syncs every staged file to disk, before any replaces its target.
fn sync_files(staged: Vec<Staged>) -> Result<Vec<Staged>, SinkError> {
    for item in &staged {
        if let Staged::File(file) = item {
            file.temporary.as_file().sync_all().map_err(|e| write_error(&file.display, e))?;
        }
    }
    Ok(staged)
}

impl Default for Commit {
    fn default() -> Self {
        Self::new()
    }
}

fn write_error(path: &Path, source: std::io::Error) -> SinkError {
    SinkError::Write { path: path.display().to_string(), source: source.into() }
}

/// The directory of `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// `path`, or, if it is a symbolic link, the file the chain of links ends at
/// (which need not exist yet).
fn resolve_links(path: &Path) -> std::io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    // As many links as Linux follows before it gives up with ELOOP.
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&current)?;
                current = parent_dir(&current).join(link);
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn nothing_changes_until_the_commit_and_a_dropped_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.csv"), dir.path().join("sub/b.csv"));
        std::fs::write(&a, "old a").unwrap();
        let mut commit = Commit::new();
        let mut writer = commit.stage(&a).unwrap();
        writer.write_all(b"new a").await.unwrap();
        writer.shutdown().await.unwrap();
        commit.put(&Location::Local(b.clone()), b"new b").unwrap();
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "old a");
        assert!(!b.exists());
        drop(commit);
        assert_eq!(files_in(dir.path()), ["a.csv", "sub"]);
        assert!(files_in(&dir.path().join("sub")).is_empty(), "staged files are removed");

        let mut commit = Commit::new();
        commit.put(&Location::Local(a.clone()), b"new a").unwrap();
        commit.put(&Location::Local(b.clone()), b"new b").unwrap();
        commit.commit().await.unwrap();
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "new a");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "new b");
        assert_eq!(files_in(dir.path()), ["a.csv", "sub"]);
    }

    #[test]
    fn a_directory_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let error = Commit::new().put(&Location::Local(dir.path().to_path_buf()), b"x").unwrap_err();
        assert!(format!("{:#}", anyhow::Error::from(error)).ends_with("it is a directory"));
    }

    #[tokio::test]
    async fn links_are_written_through_and_modes_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real/out.csv");
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::fs::write(&real, "old").unwrap();
        std::fs::set_permissions(&real, Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("out.csv");
        std::os::unix::fs::symlink("real/out.csv", &link).unwrap();
        let mut commit = Commit::new();
        commit.put(&Location::Local(link.clone()), b"new").unwrap();
        commit.commit().await.unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays a link");
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        assert_eq!(std::fs::metadata(&real).unwrap().permissions().mode() & 0o777, 0o640);
    }
}
