//! [`DiskFile`]: the log's [`FileIo`] over an ordinary file through `std::fs`, so the durable
//! engine and its `FileLog` run against a real disk in tests and benchmarks, on any OS. The
//! driver keeps its own `Zw*` file; this one is never in a kernel build.
//!
//! `flush` is `File::sync_data`: `fdatasync` on Linux, `FlushFileBuffers` on Windows, the same
//! call the driver's `ZwFlushBuffersFile` makes. Every write and flush is counted, so a benchmark
//! can tell how many times the disk was really asked to make data durable (a force that finds
//! its records already durable costs none).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use ktmrm_core::wal::FileIo;
use ktmrm_proto::NtStatus;

/// `STATUS_DISK_FULL` (ntstatus.h 0xC000007F).
pub const STATUS_DISK_FULL: NtStatus = NtStatus(0xC000_007F_u32 as i32);
/// `STATUS_IO_DEVICE_ERROR` (ntstatus.h 0xC0000185): any other I/O failure.
pub const STATUS_IO_DEVICE_ERROR: NtStatus = NtStatus(0xC000_0185_u32 as i32);

/// The NTSTATUS the driver's `Zw*` call would most likely have returned for `e`.
#[must_use]
pub fn io_status(e: &io::Error) -> NtStatus {
    match e.kind() {
        io::ErrorKind::NotFound => NtStatus::OBJECT_NAME_NOT_FOUND,
        io::ErrorKind::PermissionDenied => NtStatus::ACCESS_DENIED,
        io::ErrorKind::OutOfMemory => NtStatus::INSUFFICIENT_RESOURCES,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => STATUS_DISK_FULL,
        _ => STATUS_IO_DEVICE_ERROR,
    }
}

/// Calls of each kind a [`DiskFile`] made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskCounts {
    /// `write_at` calls.
    pub writes: u64,
    /// `flush` calls: one `sync_data` each.
    pub flushes: u64,
    /// `replace` calls (checkpoint rewrites).
    pub replaces: u64,
}

/// A log file on disk. `FileLog` serialises every call, so the handle's mutex is never contended;
/// it is there because `replace` swaps the handle for the renamed new file.
#[derive(Debug)]
pub struct DiskFile {
    path: PathBuf,
    file: Mutex<File>,
    writes: AtomicU64,
    flushes: AtomicU64,
    replaces: AtomicU64,
}

impl DiskFile {
    /// Opens `path` for reading and writing, creating it empty if it does not exist.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = open_rw(&path)?;
        Ok(DiskFile {
            path,
            file: Mutex::new(file),
            writes: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            replaces: AtomicU64::new(0),
        })
    }

    /// Where the file is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The calls made so far.
    #[must_use]
    pub fn counts(&self) -> DiskCounts {
        DiskCounts {
            writes: self.writes.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            replaces: self.replaces.load(Ordering::Relaxed),
        }
    }

    fn file(&self) -> MutexGuard<'_, File> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The temporary file `replace` writes before renaming it over the log.
    fn new_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".new");
        PathBuf::from(p)
    }
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

#[cfg(unix)]
fn read_at(f: &File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, offset)
}

#[cfg(unix)]
fn write_all_at(f: &File, offset: u64, data: &[u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, data, offset)
}

#[cfg(windows)]
fn read_at(f: &File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(f, buf, offset)
}

#[cfg(windows)]
fn write_all_at(f: &File, mut offset: u64, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(f, data, offset)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
        offset += n as u64;
    }
    Ok(())
}

/// Makes a rename in `dir` durable (POSIX: fsync the directory; Windows has no such call and
/// `MoveFileEx`'s rename is journalled by NTFS).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

impl FileIo for DiskFile {
    fn len(&self) -> Result<u64, NtStatus> {
        self.file()
            .metadata()
            .map(|m| m.len())
            .map_err(|e| io_status(&e))
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, NtStatus> {
        read_at(&self.file(), offset, buf).map_err(|e| io_status(&e))
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), NtStatus> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        write_all_at(&self.file(), offset, data).map_err(|e| io_status(&e))
    }

    fn flush(&self) -> Result<(), NtStatus> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.file().sync_data().map_err(|e| io_status(&e))
    }

    fn truncate(&self, len: u64) -> Result<(), NtStatus> {
        let f = self.file();
        f.set_len(len)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_status(&e))
    }

    /// Writes `<path>.new`, syncs it, renames it over the log and syncs the directory; then the
    /// handle is the new file's. A crash leaves the old log or the new one.
    fn replace(&self, data: &[u8]) -> Result<(), NtStatus> {
        self.replaces.fetch_add(1, Ordering::Relaxed);
        let tmp = self.new_path();
        let mut f = self.file();
        let new = (|| {
            let n = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            write_all_at(&n, 0, data)?;
            n.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty());
            sync_dir(dir.unwrap_or(Path::new(".")))?;
            Ok::<File, io::Error>(n)
        })();
        match new {
            Ok(n) => {
                *f = n;
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(io_status(&e))
            }
        }
    }
}
