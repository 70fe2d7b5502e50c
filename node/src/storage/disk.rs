//! The disk under storage: every file-system call the storage layer makes,
//! as two traits, so the same storage code runs on the real disk
//! ([`super::GlommioDisk`]: io_uring, `O_DIRECT`) and on a simulated one
//! (`trilog_sim::SimDisk`: in memory, deterministic, with crashes, torn
//! writes and a full disk).
//!
//! The calls are those of direct I/O: whole blocks at aligned positions,
//! from buffers the file allocates. What is durable is what a real disk
//! keeps: a file's data once [`DiskFile::fdatasync`] returns; the creation,
//! renaming and unlinking of a file once [`Disk::sync_dir`] of its directory
//! returns. An implementation may lose anything else in a crash.
//!
//! Errors are `io::Error`s that keep the OS error code
//! (`raw_os_error()`): storage tells ENOSPC (a full disk, which the node
//! answers differently) from every other failure by that code alone.
//!
//! The futures are not `Send`: the node is thread-per-core, and every file
//! lives and dies on the executor that opened it. Dispatch is static (the
//! storage types are generic over `D: Disk`), so a simulator can wrap a
//! disk in another that adds latency or faults without any cost to the
//! node.

// `async fn` in a public trait warns because callers cannot require the
// futures to be `Send`; here they never are (see the module doc).
#![allow(async_fn_in_trait)]

use std::ffi::OsString;
use std::fmt::Debug;
use std::io;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::rc::Rc;

/// How [`Disk::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist.
    Existing,
    /// Create the file, or empty it if it exists.
    CreateEmpty,
}

/// A disk: opens files and changes directories. Cloning gives another
/// handle to the same disk.
pub trait Disk: Clone + Debug + 'static {
    type File: DiskFile;

    /// Opens `path` for direct reads and writes (`O_DIRECT`, read-write).
    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File>;

    /// Renames `from` to `to`, replacing `to` if it exists. Durable once the
    /// directory is synced.
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the name `path`; open handles keep working. Durable once the
    /// directory is synced.
    async fn unlink(&self, path: &Path) -> io::Result<()>;

    /// Makes the creations, renames and unlinks in `dir` durable.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// The names of the entries of `dir` (not `.` or `..`), in no
    /// particular order.
    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>>;

    /// Creates `dir` and any missing parent; succeeds if it exists.
    async fn create_dir(&self, dir: &Path) -> io::Result<()>;

    /// Whether `path` names a file or a directory.
    async fn exists(&self, path: &Path) -> io::Result<bool>;
}

/// A file open for direct I/O.
pub trait DiskFile: Debug + 'static {
    /// A buffer for [`DiskFile::write_at`], aligned as direct I/O needs.
    type Buffer: DiskBuffer;
    /// The bytes a read returned.
    type ReadBuf: Deref<Target = [u8]> + Debug;

    /// The alignment direct I/O needs on this file, for positions, lengths
    /// and buffers, in bytes.
    fn alignment(&self) -> u64;

    /// A buffer of `len` bytes for writes to this file. Its contents are
    /// unspecified: the caller writes every byte it hands to a write.
    fn alloc_buffer(&self, len: usize) -> Self::Buffer;

    /// Writes the whole of `buf` at `pos` (both aligned); returns the bytes
    /// written. Extends the file if the write ends past its size.
    async fn write_at(&self, buf: Self::Buffer, pos: u64) -> io::Result<usize>;

    /// Reads `len` bytes at `pos` (both aligned); fewer when the file ends
    /// first.
    async fn read_at_aligned(&self, pos: u64, len: usize) -> io::Result<Self::ReadBuf>;

    /// Makes the data written so far, and the file's size, durable.
    async fn fdatasync(&self) -> io::Result<()>;

    /// Allocates the file up to `size` bytes, extending its size to `size`
    /// if shorter (the new bytes read as zeros); never shrinks it.
    async fn pre_allocate(&self, size: u64) -> io::Result<()>;

    /// Makes `[pos, pos + len)` read as zeros without changing the size.
    async fn punch_hole(&self, pos: u64, len: u64) -> io::Result<()>;

    /// The file's size in bytes.
    async fn size(&self) -> io::Result<u64>;

    /// Closes the file now if this is its last handle; otherwise the last
    /// handle to be dropped closes it.
    async fn close(self: Rc<Self>) -> io::Result<()>;
}

/// A write buffer: bytes in memory aligned for direct I/O.
pub trait DiskBuffer: Deref<Target = [u8]> + DerefMut + Debug {
    /// Shortens the buffer to its first `len` bytes (what a write writes).
    fn trim_to(&mut self, len: usize);
}

/// The file type of a disk.
pub type FileOf<D> = <D as Disk>::File;
/// The write buffer type of a disk.
pub type BufferOf<D> = <<D as Disk>::File as DiskFile>::Buffer;
/// The buffer a read of a disk's file fills.
pub type ReadBufOf<D> = <<D as Disk>::File as DiskFile>::ReadBuf;
