//! One run per output at a time: an exclusive lock on `<out>.lock`, which the
//! operating system releases when the holder exits, even by `kill -9`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::SinkError;

/// How often a waiting run retries the lock.
const RETRY_EVERY: Duration = Duration::from_millis(50);

/// A held lock on an output; released on drop.
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
}

/// The lock file of an output: `<out>.lock`.
pub fn lock_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl OutputLock {
    /// Takes the lock of `output`, waiting up to `timeout` for another run to finish.
    pub fn acquire(output: &Path, timeout: Duration) -> Result<Self, SinkError> {
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
                Err(TryLockError::WouldBlock) if started.elapsed() < timeout => {
                    std::thread::sleep(RETRY_EVERY)
                }
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    return Err(SinkError::Locked {
                        path,
                        holder: holder.trim().to_string(),
                        waited_secs: started.elapsed().as_secs_f64(),
                    });
                }
                Err(TryLockError::Error(error)) => return Err(io_error(error)),
            }
        }
        let holder = format!(
            "pid {} since {}",
            std::process::id(),
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
        );
        file.set_len(0).map_err(io_error)?;
        file.rewind().map_err(io_error)?;
        file.write_all(holder.as_bytes()).map_err(io_error)?;
        Ok(OutputLock { _file: file })
    }
}
