//! The durable engine's log file (`ktmrm_core::wal::FileIo` over `Zw*File` calls) and the
//! PASSIVE_LEVEL lock that serialises its I/O.
//!
//! IRQL: every `Zw*File` routine here requires PASSIVE_LEVEL with special kernel APCs enabled
//! (their DDI pages), which is why the log's I/O lock is an event (waiting on it leaves the IRQL
//! and APCs alone), never the engine's guarded mutex: `FileLog` holds the event across the write
//! and flush, and takes the guarded mutex (through its buffer lock) only for memory work.
//! Handles are kernel handles (`OBJ_KERNEL_HANDLE`) opened for synchronous I/O, so each call
//! returns when the I/O is done and works from any thread.

use super::step;
use super::sys::{object_attributes, unicode_borrowed};
use crate::durable::{NtPath, file};
use crate::ktm::obj;
use crate::trace::Level;
use alloc::boxed::Box;
use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::mem::size_of;
use core::ops::ControlFlow;
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicPtr, Ordering};
use ktmrm_core::StateLock;
use ktmrm_core::wal::{FileIo, FileLog, FileLogState, LogPort, Lsn};
use ktmrm_proto::NtStatus;
use wdk_sys::ntddk::{
    KeEnterCriticalRegion, KeInitializeEvent, KeLeaveCriticalRegion, KeSetEvent,
    KeWaitForSingleObject, ZwClose, ZwCreateFile, ZwFlushBuffersFile, ZwQueryInformationFile,
    ZwReadFile, ZwSetInformationFile, ZwWriteFile,
};
use wdk_sys::{
    _EVENT_TYPE, _FILE_INFORMATION_CLASS, _KWAIT_REASON, HANDLE, IO_STATUS_BLOCK, KEVENT,
    LARGE_INTEGER, ULONG,
};

/// Opens (`create_options` with `file::NON_DIRECTORY_FILE` or `file::DIRECTORY_FILE`) a kernel
/// handle to `path` with `disposition`.
fn open(path: &NtPath, access: u32, disposition: u32, options: u32) -> Result<HANDLE, NtStatus> {
    let mut name = unicode_borrowed(path.as_slice());
    let mut oa = object_attributes(
        &mut name,
        obj::KERNEL_HANDLE | obj::CASE_INSENSITIVE,
        null_mut(),
    );
    let mut handle: HANDLE = null_mut();
    let mut iosb = IO_STATUS_BLOCK::default();
    // ZwCreateFile(PHANDLE FileHandle, ACCESS_MASK DesiredAccess, POBJECT_ATTRIBUTES
    //   ObjectAttributes, PIO_STATUS_BLOCK IoStatusBlock, PLARGE_INTEGER AllocationSize /*NULL*/,
    //   ULONG FileAttributes, ULONG ShareAccess, ULONG CreateDisposition, ULONG CreateOptions,
    //   PVOID EaBuffer /*NULL*/, ULONG EaLength /*0*/): PASSIVE_LEVEL. The driver owns the kernel
    //   handle until ZwClose.
    // SAFETY: pointers to locals; `name` borrows `path`, alive for the call.
    let st = unsafe {
        ZwCreateFile(
            &mut handle,
            access,
            &mut oa,
            &mut iosb,
            null_mut(),
            file::ATTRIBUTE_NORMAL,
            file::SHARE_READ,
            disposition,
            options | file::SYNCHRONOUS_IO_NONALERT,
            null_mut(),
            0,
        )
    };
    step("ZwCreateFile", st)?;
    Ok(handle)
}

fn close(handle: HANDLE) {
    // ZwClose(HANDLE Handle): PASSIVE_LEVEL; the driver's own kernel handle, closed once.
    // SAFETY: `handle` came from ZwCreateFile and is not used again.
    let st = NtStatus(unsafe { ZwClose(handle) });
    if !st.is_success() {
        trace!(Level::Error, "ZwClose(log file): {}", st);
    }
}

/// Creates the log directory if it does not exist.
pub fn ensure_directory(dir: &NtPath) -> Result<(), NtStatus> {
    let h = open(
        dir,
        file::DIRECTORY_ACCESS,
        file::OPEN_IF,
        file::DIRECTORY_FILE,
    )?;
    close(h);
    Ok(())
}

/// The log file's path, with `new_path` beside it for atomic replacement. Kept in pool: two
/// 480-unit paths are too large to move through kernel stack frames.
pub struct LogPaths {
    /// The log.
    pub path: NtPath,
    /// Where a replacement is written before it is renamed over the log.
    pub new_path: NtPath,
}

/// The engine's log file.
pub struct KernelFile {
    handle: AtomicPtr<core::ffi::c_void>,
    paths: Box<LogPaths>,
}

impl KernelFile {
    /// Opens (or creates) the log file.
    pub fn open(paths: Box<LogPaths>) -> Result<Self, NtStatus> {
        let h = open(
            &paths.path,
            file::LOG_ACCESS,
            file::OPEN_IF,
            file::NON_DIRECTORY_FILE,
        )?;
        Ok(KernelFile {
            handle: AtomicPtr::new(h),
            paths,
        })
    }

    fn handle(&self) -> HANDLE {
        self.handle.load(Ordering::Acquire)
    }

    fn write_all(handle: HANDLE, offset: u64, data: &[u8]) -> Result<(), NtStatus> {
        let mut at = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let chunk = rest.len().min(1 << 20);
            let (now, later) = rest.split_at(chunk);
            let mut iosb = IO_STATUS_BLOCK::default();
            let mut pos = LARGE_INTEGER {
                QuadPart: i64::try_from(at).map_err(|_| NtStatus::INVALID_PARAMETER)?,
            };
            // ZwWriteFile(HANDLE FileHandle, HANDLE Event /*NULL*/, PIO_APC_ROUTINE /*NULL*/,
            //   PVOID ApcContext /*NULL*/, PIO_STATUS_BLOCK IoStatusBlock, PVOID Buffer, ULONG
            //   Length, PLARGE_INTEGER ByteOffset, PULONG Key /*NULL*/): PASSIVE_LEVEL,
            //   synchronous (the handle was opened FILE_SYNCHRONOUS_IO_NONALERT).
            // SAFETY: `now` is a live buffer of `chunk` bytes (at most 1 MiB: fits a ULONG); the
            // handle is open; the other pointers are locals.
            let st = unsafe {
                ZwWriteFile(
                    handle,
                    null_mut(),
                    None,
                    null_mut(),
                    &mut iosb,
                    now.as_ptr().cast_mut().cast(),
                    chunk as ULONG,
                    &mut pos,
                    null_mut(),
                )
            };
            step("ZwWriteFile(log)", st)?;
            at = at
                .checked_add(chunk as u64)
                .ok_or(NtStatus::INVALID_PARAMETER)?;
            rest = later;
        }
        Ok(())
    }

    fn flush_handle(handle: HANDLE) -> Result<(), NtStatus> {
        let mut iosb = IO_STATUS_BLOCK::default();
        // ZwFlushBuffersFile(HANDLE FileHandle, PIO_STATUS_BLOCK IoStatusBlock): PASSIVE_LEVEL.
        // Returns once the file system has written the file's cached data and metadata to the
        // device (the force of the write-ahead log).
        // SAFETY: the handle is open; `iosb` is a local.
        step("ZwFlushBuffersFile(log)", unsafe {
            ZwFlushBuffersFile(handle, &mut iosb)
        })
    }
}

impl Drop for KernelFile {
    fn drop(&mut self) {
        let h = self.handle();
        if !h.is_null() {
            close(h);
        }
    }
}

impl FileIo for KernelFile {
    fn len(&self) -> Result<u64, NtStatus> {
        // FILE_STANDARD_INFORMATION { LARGE_INTEGER AllocationSize; LARGE_INTEGER EndOfFile;
        // ULONG NumberOfLinks; BOOLEAN DeletePending; BOOLEAN Directory; } (wdm.h): 24 bytes,
        // EndOfFile the second 8.
        let mut info = [0i64; 3];
        let mut iosb = IO_STATUS_BLOCK::default();
        // ZwQueryInformationFile(HANDLE, PIO_STATUS_BLOCK, PVOID FileInformation, ULONG Length,
        //   FILE_INFORMATION_CLASS): PASSIVE_LEVEL; fills the caller's structure.
        // SAFETY: `info` is a local of the size passed; the handle is open.
        let st = unsafe {
            ZwQueryInformationFile(
                self.handle(),
                &mut iosb,
                info.as_mut_ptr().cast(),
                size_of::<[i64; 3]>() as ULONG,
                _FILE_INFORMATION_CLASS::FileStandardInformation,
            )
        };
        step("ZwQueryInformationFile(log)", st)?;
        let [_, end, _] = info;
        u64::try_from(end).map_err(|_| NtStatus::UNSUCCESSFUL)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, NtStatus> {
        let len =
            ULONG::try_from(buf.len().min(1 << 20)).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let mut iosb = IO_STATUS_BLOCK::default();
        let mut pos = LARGE_INTEGER {
            QuadPart: i64::try_from(offset).map_err(|_| NtStatus::INVALID_PARAMETER)?,
        };
        // ZwReadFile(HANDLE, HANDLE Event /*NULL*/, PIO_APC_ROUTINE /*NULL*/, PVOID /*NULL*/,
        //   PIO_STATUS_BLOCK, PVOID Buffer, ULONG Length, PLARGE_INTEGER ByteOffset, PULONG Key
        //   /*NULL*/): PASSIVE_LEVEL, synchronous; STATUS_END_OF_FILE at or past the end.
        // SAFETY: `buf` is a live, writable buffer of at least `len` bytes; the handle is open.
        let st = unsafe {
            ZwReadFile(
                self.handle(),
                null_mut(),
                None,
                null_mut(),
                &mut iosb,
                buf.as_mut_ptr().cast(),
                len,
                &mut pos,
                null_mut(),
            )
        };
        if st == file::STATUS_END_OF_FILE {
            return Ok(0);
        }
        step("ZwReadFile(log)", st)?;
        Ok(iosb.Information.min(len as u64) as usize)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), NtStatus> {
        Self::write_all(self.handle(), offset, data)
    }

    fn flush(&self) -> Result<(), NtStatus> {
        Self::flush_handle(self.handle())
    }

    fn truncate(&self, len: u64) -> Result<(), NtStatus> {
        // FILE_END_OF_FILE_INFORMATION { LARGE_INTEGER EndOfFile; } (wdm.h).
        let mut info: i64 = i64::try_from(len).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let mut iosb = IO_STATUS_BLOCK::default();
        // ZwSetInformationFile(HANDLE, PIO_STATUS_BLOCK, PVOID FileInformation, ULONG Length,
        //   FILE_INFORMATION_CLASS FileEndOfFileInformation): PASSIVE_LEVEL; sets the end of file.
        // SAFETY: `info` is a local of the size passed; the handle is open for writing.
        let st = unsafe {
            ZwSetInformationFile(
                self.handle(),
                &mut iosb,
                (&raw mut info).cast(),
                size_of::<i64>() as ULONG,
                _FILE_INFORMATION_CLASS::FileEndOfFileInformation,
            )
        };
        step("ZwSetInformationFile(EndOfFile)", st)?;
        self.flush()
    }

    /// Writes `data` to the `.new` file, flushes it, closes the log, renames the new file over
    /// it (`ReplaceIfExists`), and reopens it. A crash before the rename leaves the old log (and
    /// a stale `.new`, overwritten next time); after it, the new one.
    fn replace(&self, data: &[u8]) -> Result<(), NtStatus> {
        let new = open(
            &self.paths.new_path,
            file::LOG_ACCESS,
            file::OVERWRITE_IF,
            file::NON_DIRECTORY_FILE | file::WRITE_THROUGH,
        )?;
        let written = Self::write_all(new, 0, data).and_then(|()| Self::flush_handle(new));
        if let Err(st) = written {
            close(new);
            return Err(st);
        }
        let info = match crate::durable::RenameInformation::new(self.paths.path.as_slice()) {
            Ok(i) => i,
            Err(st) => {
                close(new);
                return Err(st);
            }
        };
        let bytes = info.len();
        // The log's own handle must be closed before another file can be renamed over it.
        let old = self.handle.swap(null_mut(), Ordering::AcqRel);
        if !old.is_null() {
            close(old);
        }
        let mut iosb = IO_STATUS_BLOCK::default();
        // ZwSetInformationFile(new, ..., FileRenameInformation): PASSIVE_LEVEL. Renames the open
        // file (opened with DELETE access) to the log's full path, replacing it atomically.
        // SAFETY: `info` is a FILE_RENAME_INFORMATION of `bytes` bytes (8-aligned: a Vec<u64>);
        // the handle is open with DELETE access.
        let renamed = step("ZwSetInformationFile(Rename)", unsafe {
            ZwSetInformationFile(
                new,
                &mut iosb,
                info.as_ptr().cast_mut().cast(),
                bytes as ULONG,
                _FILE_INFORMATION_CLASS::FileRenameInformation,
            )
        });
        close(new);
        // Reopen the log whatever happened: the old file if the rename failed, else the new.
        let h = open(
            &self.paths.path,
            file::LOG_ACCESS,
            file::OPEN_IF,
            file::NON_DIRECTORY_FILE,
        )?;
        self.handle.store(h, Ordering::Release);
        renamed
    }
}

/// A lock that keeps its holder at PASSIVE_LEVEL with APCs enabled: a synchronization event
/// (auto-reset, starts signalled) in its own non-paged block, so file I/O may run inside.
pub struct EventLock<T> {
    event: NonNull<KEVENT>,
    value: UnsafeCell<T>,
}

// SAFETY: the event serialises every access to `value` (one waiter is released per signal).
unsafe impl<T: Send> Sync for EventLock<T> {}
// SAFETY: the lock owns the value and the event block; the block does not move.
unsafe impl<T: Send> Send for EventLock<T> {}

impl<T> EventLock<T> {
    /// Allocates and initialises the event. `STATUS_INSUFFICIENT_RESOURCES` without pool.
    pub fn new(value: T) -> Result<Self, NtStatus> {
        let layout = Layout::new::<KEVENT>();
        // SAFETY: KEVENT has a non-zero size; pool alignment covers its alignment.
        let raw = unsafe { alloc::alloc::alloc(layout) }.cast::<KEVENT>();
        let event = NonNull::new(raw).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        // KeInitializeEvent(PRKEVENT Event, EVENT_TYPE Type, BOOLEAN State): any IRQL for a
        // non-paged event. A SynchronizationEvent in the signalled state: the first wait passes
        // and resets it, like taking a mutex.
        // SAFETY: `event` is an exclusive, non-paged, aligned block for a KEVENT.
        unsafe { KeInitializeEvent(event.as_ptr(), _EVENT_TYPE::SynchronizationEvent, 1) };
        Ok(EventLock {
            event,
            value: UnsafeCell::new(value),
        })
    }
}

impl<T> Drop for EventLock<T> {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; nobody waits on it (`&mut self`).
        unsafe { alloc::alloc::dealloc(self.event.as_ptr().cast(), Layout::new::<KEVENT>()) };
    }
}

/// Releases the lock: signals the event, then leaves the critical region `with` entered.
struct Signal(NonNull<KEVENT>);

impl Drop for Signal {
    fn drop(&mut self) {
        // KeSetEvent(PRKEVENT Event, KPRIORITY Increment, BOOLEAN Wait): IRQL <= DISPATCH_LEVEL;
        // releases one waiter (or leaves the event signalled). IO_NO_INCREMENT, Wait FALSE.
        // SAFETY: the event was initialised in `new` and outlives the lock's users.
        let _ = unsafe { KeSetEvent(self.0.as_ptr(), 0, 0) };
        // KeLeaveCriticalRegion(): IRQL <= APC_LEVEL; pairs with the KeEnterCriticalRegion in
        // `with`, on the same thread, after the lock is released.
        // SAFETY: this thread entered the region in `with` and leaves it exactly once.
        unsafe { KeLeaveCriticalRegion() };
    }
}

impl<T: Send> StateLock<T> for EventLock<T> {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // An event used as a lock needs a critical region: otherwise the holder (a user thread in
        // an IOCTL) can be suspended by a normal kernel APC while it holds the lock, stalling
        // every durable commit, notification and unload behind it ("Critical Regions and Guarded
        // Regions", learn.microsoft.com/windows-hardware/drivers/kernel). A critical region
        // disables only normal kernel APCs: special kernel APCs, which the Zw* file routines need,
        // stay enabled (a guarded region, as a guarded mutex enters, would disable them too).
        // KeEnterCriticalRegion(): IRQL <= APC_LEVEL.
        // SAFETY: no preconditions; left in Signal::drop on this thread.
        unsafe { KeEnterCriticalRegion() };
        // KeWaitForSingleObject(PVOID Object, KWAIT_REASON Executive, KPROCESSOR_MODE
        //   KernelMode, BOOLEAN Alertable FALSE, PLARGE_INTEGER Timeout NULL): IRQL <= APC_LEVEL
        //   for an infinite wait; callers are at PASSIVE_LEVEL. Returns STATUS_SUCCESS once the
        //   event was signalled, resetting it.
        // SAFETY: the event lives as long as `self`.
        let _ = unsafe {
            KeWaitForSingleObject(
                self.event.as_ptr().cast(),
                _KWAIT_REASON::Executive,
                obj::KERNEL_MODE,
                0,
                null_mut(),
            )
        };
        let _signal = Signal(self.event);
        // SAFETY: the wait consumed the signal, so this is the only holder until `_signal`.
        f(unsafe { &mut *self.value.get() })
    }
}

/// The durable engine's log: the log file behind a guarded mutex (memory work, under the
/// engine's lock) and an event lock (I/O).
pub type DriverLog = FileLog<KernelFile, super::lock::GuardedLock<FileLogState>, EventLock<()>>;

/// The engine's log: the file log when durable, none when volatile (a volatile engine's state
/// never calls it; every method then fails with `STATUS_TM_VOLATILE`).
pub struct MaybeLog(pub Option<Box<DriverLog>>);

impl MaybeLog {
    fn get(&self) -> Result<&DriverLog, NtStatus> {
        self.0.as_deref().ok_or(NtStatus::TM_VOLATILE)
    }
}

impl LogPort for MaybeLog {
    fn append(&self, record: &[u8]) -> Result<Lsn, NtStatus> {
        self.get()?.append(record)
    }
    fn force(&self, upto: Lsn) -> Result<(), NtStatus> {
        self.get()?.force(upto)
    }
    fn read(
        &self,
        from: Option<Lsn>,
        sink: &mut dyn FnMut(Lsn, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), NtStatus> {
        self.get()?.read(from, sink)
    }
    fn truncate_before(&self, lsn: Lsn) -> Result<(), NtStatus> {
        self.get()?.truncate_before(lsn)
    }
    fn discard_from(&self, lsn: Lsn) -> Result<(), NtStatus> {
        self.get()?.discard_from(lsn)
    }
    fn reserve(&self, records: usize, bytes: usize) -> Result<(), NtStatus> {
        self.get()?.reserve(records, bytes)
    }
    fn unreserve(&self, records: usize, bytes: usize) {
        if let Ok(l) = self.get() {
            l.unreserve(records, bytes);
        }
    }
    fn append_reserved(&self, record: &[u8]) -> Result<Lsn, NtStatus> {
        self.get()?.append_reserved(record)
    }
}
