use std::path::Path;
use std::rc::Rc;

use futures_lite::future::block_on;
use trilog_node::storage::{Disk, DiskFile, OpenMode};

use super::*;

const BLOCK: usize = DIRECT_IO_ALIGN_BYTES as usize;

fn dir() -> &'static Path {
    Path::new("/data/shard-0")
}

fn code<T: std::fmt::Debug>(r: io::Result<T>) -> Option<i32> {
    r.expect_err("call should fail").raw_os_error()
}

async fn write_block(file: &SimFile, pos: u64, byte: u8) {
    let mut buf = file.alloc_buffer(BLOCK);
    buf.fill(byte);
    assert_eq!(file.write_at(buf, pos).await.expect("write"), BLOCK);
}

async fn new_disk() -> SimDisk {
    let disk = SimDisk::new();
    disk.create_dir(dir()).await.expect("mkdir");
    disk
}

#[test]
fn a_file_survives_a_crash_only_once_synced_and_named_durably() {
    block_on(async {
        let disk = new_disk().await;
        let a = dir().join("a");
        let file = disk.open(&a, OpenMode::CreateEmpty).await.expect("open");
        write_block(&file, 0, 1).await;
        file.fdatasync().await.expect("sync");
        assert_eq!(disk.durable_bytes(&a), None, "name not durable yet");
        disk.crash(&mut Rng::new(1));
        assert!(!disk.exists(&a).await.expect("exists"));
        assert_eq!(
            code(file.size().await),
            Some(libc::EBADF),
            "a handle from before the crash"
        );

        let file = disk.open(&a, OpenMode::CreateEmpty).await.expect("open");
        disk.sync_dir(dir()).await.expect("sync dir");
        write_block(&file, 0, 2).await;
        file.fdatasync().await.expect("sync");
        write_block(&file, BLOCK as u64, 3).await;
        assert_eq!(disk.durable_bytes(&a), Some(vec![2; BLOCK]));
        assert!(!disk.is_synced());
        drop(file);
        disk.crash(&mut Rng::new(2));
        let bytes = disk.bytes(&a).expect("survives");
        assert_eq!(&bytes[..BLOCK], &[2; BLOCK][..]);
        // The unsynced block: nothing, or some of its sectors.
        for sector in bytes[BLOCK..].chunks(SECTOR_BYTES as usize) {
            assert!(sector.iter().all(|b| *b == 0) || sector.iter().all(|b| *b == 3));
        }
        assert!(disk.is_synced());
    });
}

#[test]
fn renames_and_unlinks_are_undone_without_a_directory_sync() {
    block_on(async {
        let disk = new_disk().await;
        let (a, b) = (dir().join("a"), dir().join("b"));
        let file = disk.open(&a, OpenMode::CreateEmpty).await.expect("open");
        write_block(&file, 0, 7).await;
        file.fdatasync().await.expect("sync");
        disk.sync_dir(dir()).await.expect("sync dir");

        disk.rename(&a, &b).await.expect("rename");
        assert_eq!(disk.list_dir(dir()).await.expect("list"), vec!["b"]);
        assert_eq!(disk.durable_names_in(dir()), vec![a.clone()]);
        let report = disk.crash(&mut Rng::new(3));
        assert_eq!(report.names_undone, 2);
        assert_eq!(disk.list_dir(dir()).await.expect("list"), vec!["a"]);

        // An unlinked file stays readable through its handle; the unlink is
        // undone by a crash before the directory sync, final after it.
        let file = disk.open(&a, OpenMode::Existing).await.expect("open");
        disk.unlink(&a).await.expect("unlink");
        assert_eq!(code(disk.unlink(&a).await), Some(libc::ENOENT));
        assert_eq!(
            file.read_at_aligned(0, BLOCK).await.expect("read"),
            vec![7; BLOCK]
        );
        disk.crash(&mut Rng::new(4));
        assert!(disk.exists(&a).await.expect("exists"));
        disk.unlink(&a).await.expect("unlink");
        disk.sync_dir(dir()).await.expect("sync dir");
        disk.crash(&mut Rng::new(5));
        assert!(!disk.exists(&a).await.expect("exists"));
        assert_eq!(disk.used_bytes(), 0, "the unlinked file's space came back");
    });
}

#[test]
fn direct_io_alignment_is_enforced() {
    block_on(async {
        let disk = new_disk().await;
        let file = disk
            .open(&dir().join("f"), OpenMode::CreateEmpty)
            .await
            .expect("open");
        assert_eq!(file.alignment(), DIRECT_IO_ALIGN_BYTES);
        let buf = file.alloc_buffer(BLOCK);
        assert!(
            buf.iter().all(|b| *b == BUFFER_JUNK_BYTE),
            "fresh buffers hold junk"
        );
        assert_eq!(code(file.write_at(buf, 512).await), Some(libc::EINVAL));
        assert_eq!(
            code(file.write_at(file.alloc_buffer(BLOCK + 512), 0).await),
            Some(libc::EINVAL)
        );
        assert_eq!(
            code(file.read_at_aligned(100, BLOCK).await),
            Some(libc::EINVAL)
        );
        assert_eq!(code(file.read_at_aligned(0, 100).await), Some(libc::EINVAL));
        // Reads stop at the end of the file.
        file.pre_allocate(3 * BLOCK as u64).await.expect("allocate");
        let read = file.read_at_aligned(2 * BLOCK as u64, 4 * BLOCK).await;
        assert_eq!(read.expect("read"), vec![0; BLOCK]);
        assert_eq!(code(file.pre_allocate(0).await), Some(libc::EINVAL));
        assert_eq!(
            code(disk.open(&dir().join("none"), OpenMode::Existing).await),
            Some(libc::ENOENT)
        );
        assert_eq!(
            code(
                disk.open(Path::new("/nodir/f"), OpenMode::CreateEmpty)
                    .await
            ),
            Some(libc::ENOENT)
        );
    });
}

#[test]
fn a_full_disk_refuses_to_grow_files_and_nothing_else() {
    block_on(async {
        let disk = new_disk().await;
        disk.set_capacity(Some(4 * BLOCK as u64));
        let file = disk
            .open(&dir().join("f"), OpenMode::CreateEmpty)
            .await
            .expect("open");
        file.pre_allocate(3 * BLOCK as u64).await.expect("fits");
        assert_eq!(
            code(file.pre_allocate(5 * BLOCK as u64).await),
            Some(libc::ENOSPC)
        );
        assert_eq!(file.size().await.expect("size"), 3 * BLOCK as u64);
        write_block(&file, 2 * BLOCK as u64, 1).await;
        write_block(&file, 3 * BLOCK as u64, 2).await;
        let mut buf = file.alloc_buffer(BLOCK);
        buf.fill(3);
        assert_eq!(
            code(file.write_at(buf, 4 * BLOCK as u64).await),
            Some(libc::ENOSPC)
        );
        assert_eq!(file.size().await.expect("size"), 4 * BLOCK as u64);
        assert_eq!(disk.used_bytes(), 4 * BLOCK as u64);
        let other = disk
            .open(&dir().join("g"), OpenMode::CreateEmpty)
            .await
            .expect("an empty file takes no space");
        assert_eq!(code(other.pre_allocate(1).await), Some(libc::ENOSPC));
        disk.set_capacity(None);
        other.pre_allocate(1).await.expect("room again");
    });
}

#[test]
fn power_off_fails_every_call_until_the_crash() {
    block_on(async {
        let disk = new_disk().await;
        let f = dir().join("f");
        let file = disk.open(&f, OpenMode::CreateEmpty).await.expect("open");
        let before = disk.changes();
        disk.power_off_after(2);
        write_block(&file, 0, 1).await;
        assert_eq!(
            file.read_at_aligned(0, BLOCK).await.expect("read").len(),
            BLOCK
        );
        file.fdatasync().await.expect("sync");
        assert!(!disk.is_powered_off());
        assert_eq!(code(disk.sync_dir(dir()).await), Some(libc::EIO));
        assert!(disk.is_powered_off());
        assert_eq!(code(file.read_at_aligned(0, BLOCK).await), Some(libc::EIO));
        assert_eq!(code(disk.exists(&f).await), Some(libc::EIO));
        assert_eq!(disk.changes(), before + 2);
        disk.crash(&mut Rng::new(1));
        assert!(!disk.is_powered_off());
        assert!(
            !disk.exists(&f).await.expect("exists"),
            "its name was never synced"
        );
    });
}

#[test]
fn flipped_bits_are_damage_a_crash_keeps() {
    block_on(async {
        let disk = new_disk().await;
        let f = dir().join("f");
        let file = disk.open(&f, OpenMode::CreateEmpty).await.expect("open");
        disk.sync_dir(dir()).await.expect("sync dir");
        write_block(&file, 0, 0x10).await;
        file.fdatasync().await.expect("sync");
        disk.flip_bit(&f, 5, 0).expect("flip");
        assert_eq!(code(disk.flip_bit(&f, BLOCK as u64, 0)), Some(libc::EINVAL));
        assert_eq!(file.read_at_aligned(0, BLOCK).await.expect("read")[5], 0x11);
        disk.crash(&mut Rng::new(9));
        assert_eq!(disk.durable_bytes(&f).expect("file")[5], 0x11);
        drop(Rc::new(file));
    });
}

#[test]
fn the_same_seed_gives_the_same_disk() {
    let run = |seed| {
        block_on(async move {
            let disk = new_disk().await;
            let f = dir().join("f");
            let file = disk.open(&f, OpenMode::CreateEmpty).await.expect("open");
            disk.sync_dir(dir()).await.expect("sync dir");
            for round in 0..20u8 {
                write_block(&file, u64::from(round % 5) * BLOCK as u64, round).await;
                if round % 7 == 6 {
                    file.fdatasync().await.expect("sync");
                }
            }
            drop(file);
            let report = disk.crash(&mut Rng::new(seed));
            (disk.bytes(&f).expect("file"), report)
        })
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11).0, run(12).0);
}
