//! One run per output at a time. For a file: an exclusive lock on
//! `<out>.lock`, which the operating system releases when the holder exits,
//! even by `kill -9`. For an object: `<out>.lock` created only if it does
//! not exist (a conditional PUT, `If-None-Match: *`), renewed while the run
//! goes on and deleted when it ends. A lock object whose holder stopped
//! renewing it (killed) is taken over once it is stale: unchanged for
//! [`STALE`] as a waiting run watches it, or last written twice that long ago.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use object_store::{ObjectStoreExt, PutMode, PutOptions, UpdateVersion};

use crate::error::SinkError;
use crate::storage::{Location, ObjectUrl};

/// How often a waiting run retries the lock of a file.
const RETRY_EVERY: Duration = Duration::from_millis(50);
/// How often a waiting run retries the lock of an object: each try is a
/// request to the store.
const OBJECT_RETRY_EVERY: Duration = Duration::from_millis(250);
/// How often the holder of a lock object renews it.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// A lock object not renewed for this long is left by a run that died.
const STALE: Duration = Duration::from_secs(60);

/// A held lock on an output; released on drop.
#[derive(Debug)]
pub enum OutputLock {
    /// A locked file.
    File(File),
    /// A lock object, renewed until dropped.
    Object(ObjectLease),
}

/// The lock file or object of an output: `<out>.lock`.
pub fn lock_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// What a lock says about its holder.
fn holder() -> String {
    format!("pid {} since {}", std::process::id(), chrono::Local::now().format("%Y-%m-%d %H:%M:%S"))
}

impl OutputLock {
    /// Takes the lock of `output`, waiting up to `timeout` for another run to finish.
    pub async fn acquire(output: &Location, timeout: Duration) -> Result<Self, SinkError> {
        match output {
            Location::Local(path) => Self::acquire_file(path, timeout).await,
            Location::Object(url) => ObjectLease::acquire(&url.with_suffix(".lock"), timeout).await.map(OutputLock::Object),
        }
    }

    /// Fails if the lock may be lost: a lock object that another run took
    /// over, or that this one has not renewed for half the time after which
    /// another run may take it.
    pub fn check(&self) -> Result<(), SinkError> {
        match self {
            OutputLock::Object(lease) if !lease.held() => Err(SinkError::Write {
                path: lease.url.to_string(),
                source: format!(
                    "the lock could not be renewed, and another run may take it after {} s: not committing",
                    STALE.as_secs()
                )
                .into(),
            }),
            _ => Ok(()),
        }
    }

    async fn acquire_file(output: &Path, timeout: Duration) -> Result<Self, SinkError> {
        let path = lock_path(output);
        let io_error = |source: std::io::Error| SinkError::Write {
            path: path.display().to_string(),
            source: source.into(),
        };
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_error)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if started.elapsed() < timeout => tokio::time::sleep(RETRY_EVERY).await,
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    return Err(SinkError::Locked {
                        path: path.display().to_string(),
                        holder: holder.trim().to_string(),
                        waited_secs: started.elapsed().as_secs_f64(),
                    });
                }
                Err(TryLockError::Error(error)) => return Err(io_error(error)),
            }
        }
        file.set_len(0).map_err(io_error)?;
        file.rewind().map_err(io_error)?;
        file.write_all(holder().as_bytes()).map_err(io_error)?;
        Ok(OutputLock::File(file))
    }
}

/// A lock object held by this run.
#[derive(Debug)]
pub struct ObjectLease {
    url: ObjectUrl,
    /// Set when a renewal found the lock taken by another run.
    lost: Arc<AtomicBool>,
    /// When the lock was last written by this run.
    renewed: Arc<Mutex<Instant>>,
    renewal: tokio::task::JoinHandle<()>,
}

/// What a waiting run saw of a lock object, to tell when it stops changing.
struct Seen {
    version: (UpdateVersion, chrono::DateTime<chrono::Utc>),
    since: Instant,
}

impl ObjectLease {
    async fn acquire(url: &ObjectUrl, timeout: Duration) -> Result<ObjectLease, SinkError> {
        let started = Instant::now();
        let mut seen: Option<Seen> = None;
        loop {
            let create = PutOptions { mode: PutMode::Create, ..Default::default() };
            match url.store.put_opts(&url.path, holder().into(), create).await {
                Ok(put) => return Ok(ObjectLease::hold(url, UpdateVersion { e_tag: put.e_tag, version: put.version })),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(error @ object_store::Error::NotImplemented { .. }) => {
                    return Err(SinkError::Write {
                        path: url.to_string(),
                        source: format!(
                            "this store does not create objects conditionally (If-None-Match), so two runs cannot be kept apart: {error}"
                        )
                        .into(),
                    });
                }
                Err(error) => return Err(url.error("cannot create the lock", error).into()),
            }
            // Held by another run: wait, or take it over if that run stopped renewing it.
            let found = match url.store.get(&url.path).await {
                Ok(found) => found,
                // Released meanwhile: try again at once.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(error) => return Err(url.error("cannot read the lock", error).into()),
            };
            let last_modified = found.meta.last_modified;
            let version = UpdateVersion { e_tag: found.meta.e_tag.clone(), version: found.meta.version.clone() };
            let holder = found.bytes().await.map(|b| String::from_utf8_lossy(&b).trim().to_string()).unwrap_or_default();
            // Every renewal writes new text, so a live lock's ETag and time change.
            let unchanged_since = match &seen {
                Some(before) if before.version == (version.clone(), last_modified) => before.since,
                _ => Instant::now(),
            };
            let stale = unchanged_since.elapsed() >= STALE
                || chrono::Utc::now().signed_duration_since(last_modified).to_std().is_ok_and(|age| age >= 2 * STALE);
            if stale {
                let take = PutOptions { mode: PutMode::Update(version.clone()), ..Default::default() };
                match url.store.put_opts(&url.path, holder_text_after(&holder).into(), take).await {
                    Ok(put) => return Ok(ObjectLease::hold(url, UpdateVersion { e_tag: put.e_tag, version: put.version })),
                    // Renewed or taken meanwhile: wait on.
                    Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {}
                    Err(error) => return Err(url.error("cannot take over the lock", error).into()),
                }
            }
            if started.elapsed() >= timeout {
                return Err(SinkError::Locked { path: url.to_string(), holder, waited_secs: started.elapsed().as_secs_f64() });
            }
            seen = Some(Seen { version: (version, last_modified), since: unchanged_since });
            tokio::time::sleep(OBJECT_RETRY_EVERY).await;
        }
    }

    /// Keeps the lock renewed from `version` on.
    fn hold(url: &ObjectUrl, mut version: UpdateVersion) -> ObjectLease {
        let lost = Arc::new(AtomicBool::new(false));
        let renewed = Arc::new(Mutex::new(Instant::now()));
        let (renewed_url, renewed_lost, renewed_at) = (url.clone(), lost.clone(), renewed.clone());
        let renewal = tokio::spawn(async move {
            let holder = holder();
            for renewal in 1.. {
                tokio::time::sleep(RENEW_EVERY).await;
                let renew = PutOptions { mode: PutMode::Update(version.clone()), ..Default::default() };
                // New text each time, so that the ETag of a live lock changes.
                let text = format!("{holder}, renewed {renewal} times");
                match renewed_url.store.put_opts(&renewed_url.path, text.into(), renew).await {
                    Ok(put) => {
                        version = UpdateVersion { e_tag: put.e_tag, version: put.version };
                        *renewed_at.lock().expect("no panic while holding the lock") = Instant::now();
                    }
                    Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {
                        renewed_lost.store(true, Ordering::Relaxed);
                        return;
                    }
                    // A store that does not answer now may later; `held` says how long it has not.
                    Err(_) => {}
                }
            }
        });
        ObjectLease { url: url.clone(), lost, renewed, renewal }
    }

    /// Whether no other run can have taken the lock: not lost, and renewed
    /// within half the time after which it may be taken over.
    fn held(&self) -> bool {
        !self.lost.load(Ordering::Relaxed)
            && self.renewed.lock().expect("no panic while holding the lock").elapsed() < STALE / 2
    }
}

/// The text of a lock taken over from a run that stopped renewing it.
fn holder_text_after(previous: &str) -> String {
    format!("{} (taken over from a run that stopped: {previous})", holder())
}

impl Drop for ObjectLease {
    fn drop(&mut self) {
        self.renewal.abort();
        // A lock that may have been taken over is another run's to delete.
        if !self.held() {
            return;
        }
        // Deleted before the process goes on (and exits); a lock left by a
        // run that could not delete it is taken over once stale.
        let url = self.url.clone();
        let delete = async move { url.store.delete(&url.path).await };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                let _ = tokio::task::block_in_place(|| handle.block_on(delete));
            }
            Ok(handle) => drop(handle.spawn(delete)),
            Err(_) => {}
        }
    }
}
