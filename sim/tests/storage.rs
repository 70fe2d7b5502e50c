//! The node's storage layer, unchanged, on the simulated disk: create,
//! stage, flush, control writes, seal, read, recover, remove; a crash at
//! every step of a segment's creation; damage; a full disk.

mod support;

use futures_lite::future::block_on;
use trilog_node::storage::{
    recover_dir, CtlState, Disk, ScanStop, SegmentFile, StorageError, BLOCK_BYTES,
    PREALLOC_CHUNK_BYTES,
};
use trilog_sim::Rng;
use trilog_wire::limits::ENTRY_BYTES_MAX;

use support::{
    commit_of, dir, end_of, flush, header, new_disk, payload, read_range, recover_one, stage,
    write_ctl,
};

#[test]
fn a_segment_lives_through_create_flush_ctl_seal_and_recovery() {
    block_on(async {
        let disk = new_disk().await;
        let mut seg = SegmentFile::create(&disk, &dir(), header(1))
            .await
            .expect("create");
        // Both files and both names are durable before create returns.
        assert!(disk.is_synced());
        let key = header(1).key();
        assert_eq!(
            disk.durable_names_in(&dir()),
            vec![key.ctl_path(&dir()), key.data_path(&dir())]
        );

        let sizes = |o: u64| (o as usize * 977) % 6000;
        for o in 0..40 {
            stage(&mut seg, o, &payload(o, sizes(o), 0));
            if o % 6 == 5 {
                flush(&mut seg).await.expect("flush");
                assert!(disk.is_synced(), "a flush leaves nothing unsynced");
            }
        }
        assert_eq!(seg.durable_len(), 36);
        let fenced = CtlState {
            fenced_epoch: 4,
            sealed_len: None,
            watermark: 30,
        };
        write_ctl(&mut seg, fenced).await.expect("ctl");
        assert_eq!(flush(&mut seg).await.expect("flush"), 40);
        let got = read_range(&seg, 0, 40, 10_000).await.expect("read");
        for (o, p) in &got {
            assert_eq!(p, &payload(*o, sizes(*o), 0));
        }

        // A clean crash: everything was synced.
        drop(seg);
        let report = disk.crash(&mut Rng::new(1));
        assert_eq!(report.effect.pending_sectors, 0);
        let r = recover_one(&disk, &dir())
            .await
            .expect("recover")
            .expect("segment");
        assert_eq!(
            (r.len, r.ctl, r.stop.clone()),
            (40, fenced, ScanStop::CleanEnd)
        );
        assert_eq!(r.max_commit, commit_of(39));
        let mut seg = r.file;

        // Appends continue after recovery, then a seal below them.
        for o in 40..50 {
            stage(&mut seg, o, &payload(o, 100, 1));
        }
        flush(&mut seg).await.expect("flush");
        let sealed = CtlState {
            fenced_epoch: 5,
            sealed_len: Some(45),
            watermark: 45,
        };
        write_ctl(&mut seg, sealed).await.expect("seal");
        seg.seal_truncate(45);
        assert_eq!(seg.durable_len(), 45);
        drop(seg);
        disk.crash(&mut Rng::new(2));
        let r = recover_one(&disk, &dir())
            .await
            .expect("recover")
            .expect("segment");
        assert_eq!((r.len, r.ctl), (45, sealed));
        let got = read_range(&r.file, 38, 45, 1).await.expect("read");
        assert_eq!(got[1], (39, payload(39, sizes(39), 0)));
        assert_eq!(got[6], (44, payload(44, 100, 1)));

        // Removing deletes both files, durably.
        r.file.remove().await.expect("remove");
        disk.crash(&mut Rng::new(3));
        assert!(disk.durable_names_in(&dir()).is_empty());
        assert!(recover_dir(&disk, &dir())
            .await
            .expect("recover")
            .is_empty());
    });
}

#[test]
fn a_crash_at_any_step_of_create_leaves_no_segment_or_a_whole_one() {
    let mut outcomes = [0u32; 2];
    for step in 0..30 {
        block_on(async {
            let disk = new_disk().await;
            disk.power_off_after(step);
            let created = SegmentFile::create(&disk, &dir(), header(7)).await.is_ok();
            disk.crash(&mut Rng::new(step));
            let found = recover_one(&disk, &dir()).await.expect("recover");
            // Recovery removed any unfinished data file, durably.
            assert!(disk.is_synced(), "step {step}");
            let names = disk.durable_names_in(&dir());
            assert!(
                names
                    .iter()
                    .all(|p| !p.to_string_lossy().ends_with(".creating")),
                "step {step}: {names:?}"
            );
            match found {
                Some(r) => {
                    assert!(created, "step {step}: a segment whose create failed");
                    assert_eq!((r.len, r.ctl), (0, CtlState::default()));
                    outcomes[1] += 1;
                }
                None => {
                    assert!(!created, "step {step}: a created segment was lost");
                    // Creating it again works (over a leftover `.ctl`).
                    let mut seg = SegmentFile::create(&disk, &dir(), header(7))
                        .await
                        .expect("create again");
                    stage(&mut seg, 0, b"x");
                    assert_eq!(flush(&mut seg).await.expect("flush"), 1);
                    outcomes[0] += 1;
                }
            }
        });
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

#[test]
fn a_flipped_bit_in_a_durable_record_is_found_not_served() {
    block_on(async {
        let disk = new_disk().await;
        let mut seg = SegmentFile::create(&disk, &dir(), header(2))
            .await
            .expect("create");
        for o in 0..30 {
            stage(&mut seg, o, &payload(o, 300, 0));
        }
        flush(&mut seg).await.expect("flush");
        let path = seg.data_path().to_path_buf();
        let record_6 = end_of([300; 6]);
        disk.flip_bit(&path, record_6 + 40, 3).expect("flip");

        let err = read_range(&seg, 0, 30, 1 << 20)
            .await
            .expect_err("a damaged record served");
        assert!(
            matches!(&err, StorageError::CorruptRecord { pos, .. } if *pos == record_6),
            "{err:?}"
        );
        let fine = read_range(&seg, 0, 6, 1 << 20).await.expect("before it");
        assert_eq!(fine.len(), 6);

        drop(seg);
        disk.crash(&mut Rng::new(4));
        let before = disk.durable_bytes(&path).expect("file");
        let r = recover_one(&disk, &dir())
            .await
            .expect("recover")
            .expect("segment");
        assert_eq!(r.len, 6);
        assert_eq!(
            r.stop,
            ScanStop::Corrupt {
                offset: 6,
                reason: "record payload crc mismatch"
            }
        );
        // Record 29 says (commit field 14) that records below 14 were
        // durable: the bad record 6 is damage, not a torn tail. Damage is
        // reported and the file is kept as it was: the good records after
        // it are evidence for a repair, not garbage to zero.
        let damage = r.damage.expect("damage reported");
        assert_eq!((damage.from, damage.should_hold), (6, None));
        let after = disk.durable_bytes(&path).expect("file");
        assert!(before == after, "recovery changed a damaged file");
        assert!(after[record_6 as usize + BLOCK_BYTES as usize..]
            .iter()
            .any(|b| *b != 0));
    });
}

#[test]
fn a_full_disk_fails_the_flush_that_extends_and_keeps_the_durable_prefix() {
    block_on(async {
        let disk = new_disk().await;
        // Room for the control file and one preallocation chunk, not two.
        let ctl_bytes = 2 * BLOCK_BYTES;
        disk.set_capacity(Some(ctl_bytes + PREALLOC_CHUNK_BYTES + BLOCK_BYTES));
        let mut seg = SegmentFile::create(&disk, &dir(), header(3))
            .await
            .expect("create");
        let big = ENTRY_BYTES_MAX as usize;
        let mut offset = 0;
        let mut flushed = 0;
        let err = loop {
            stage(&mut seg, offset, &payload(offset, big, 0));
            offset += 1;
            match flush(&mut seg).await {
                Ok(len) => flushed = len,
                Err(e) => break e,
            }
            assert!(offset < 100, "the disk never filled");
        };
        assert!(err.is_no_space(), "{err:?}");
        assert!(err.to_string().contains(".seg"), "{err}");
        assert!(flushed > 10, "{flushed}");
        assert!(end_of(vec![big; flushed as usize]) <= PREALLOC_CHUNK_BYTES);
        assert!(end_of(vec![big; offset as usize]) > PREALLOC_CHUNK_BYTES);

        // The segment takes nothing more, serves its durable prefix, and
        // still takes control writes.
        assert!(seg.failure().is_some());
        assert_eq!((seg.durable_len(), seg.staged_len()), (flushed, flushed));
        stage(&mut seg, flushed, b"ignored");
        assert!(seg.begin_flush().is_none());
        let got = read_range(&seg, flushed - 2, flushed, 1)
            .await
            .expect("read");
        assert_eq!(got[1].1, payload(flushed - 1, big, 0));
        let sealed = CtlState {
            fenced_epoch: 1,
            sealed_len: Some(flushed),
            watermark: flushed,
        };
        write_ctl(&mut seg, sealed)
            .await
            .expect("ctl on a full disk");

        drop(seg);
        disk.crash(&mut Rng::new(5));
        let r = recover_one(&disk, &dir())
            .await
            .expect("recover")
            .expect("segment");
        assert_eq!((r.len, r.ctl), (flushed, sealed));
        let got = read_range(&r.file, 0, flushed, 4 << 20)
            .await
            .expect("read");
        assert!(got.iter().all(|(o, p)| *p == payload(*o, big, 0)));

        // A new segment does not fit.
        let err = SegmentFile::create(&disk, &dir(), header(4))
            .await
            .map(|s| s.key())
            .expect_err("created on a full disk");
        assert!(err.is_no_space(), "{err:?}");
        // It left no half-made file behind: only segment 3's two files.
        let mut names = disk.list_dir(&dir()).await.expect("list");
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        let seg3 = header(3).key();
        for name in &names {
            let name = std::path::Path::new(name);
            assert!(
                [seg3.data_path(&dir()), seg3.ctl_path(&dir())]
                    .iter()
                    .any(|p| p.file_name() == Some(name.as_os_str())),
                "{names:?}"
            );
        }
    });
}

#[test]
fn unsynced_records_may_survive_a_crash_but_never_half_valid() {
    // Flushes whose fdatasync never happened: the records of the torn
    // write survive up to some record, never past a bad one.
    let mut survived_some = 0;
    let mut lost_some = 0;
    for seed in 0..100 {
        block_on(async {
            let disk = new_disk().await;
            let mut seg = SegmentFile::create(&disk, &dir(), header(5))
                .await
                .expect("create");
            for o in 0..5 {
                stage(&mut seg, o, &payload(o, 700, 0));
            }
            flush(&mut seg).await.expect("flush");
            for o in 5..25 {
                stage(&mut seg, o, &payload(o, 700, 0));
            }
            // The write happens, the fdatasync does not.
            let job = seg.begin_flush().expect("job");
            disk.power_off_after(1);
            assert!(job.run().await.is_err());
            drop(seg);
            let report = disk.crash(&mut Rng::new(seed));
            assert!(report.effect.pending_sectors > 0);
            let r = recover_one(&disk, &dir())
                .await
                .expect("recover")
                .expect("segment");
            assert!((5..=25).contains(&r.len), "{}", r.len);
            survived_some += u32::from(r.len > 5);
            lost_some += u32::from(r.len < 25);
            let got = read_range(&r.file, 0, r.len, 1 << 20).await.expect("read");
            assert!(got.iter().all(|(o, p)| *p == payload(*o, 700, 0)));
        });
    }
    assert!(
        survived_some > 10 && lost_some > 10,
        "{survived_some} {lost_some}"
    );
}

#[test]
fn stale_records_in_the_tail_block_never_come_back() {
    // 480-byte payloads make 512-byte records: one record per sector, so
    // a torn write can keep any subset of them.
    const LEN: usize = 480;
    // Seeds where the first crash kept record 3 and lost record 2.
    let mut stale_left = 0;
    for seed in 0..300 {
        block_on(async {
            let mut rng = Rng::new(seed);
            let disk = new_disk().await;
            let mut seg = SegmentFile::create(&disk, &dir(), header(6))
                .await
                .expect("create");
            for o in 0..2 {
                stage(&mut seg, o, &payload(o, LEN, 0));
            }
            flush(&mut seg).await.expect("flush");
            // Life 1: records 2 and 3 written, never synced.
            for o in 2..4 {
                stage(&mut seg, o, &payload(o, LEN, 1));
            }
            let job = seg.begin_flush().expect("job");
            disk.power_off_after(1);
            assert!(job.run().await.is_err());
            let path = seg.data_path().to_path_buf();
            drop(seg);
            disk.crash(&mut rng);
            let bytes = disk.durable_bytes(&path).expect("file");
            let zeros = |o: usize| {
                let at = end_of(vec![LEN; o]) as usize;
                bytes[at..at + LEN + 32].iter().all(|b| *b == 0)
            };
            if !zeros(2) || zeros(3) {
                return; // not the case under test: record 2 lost, 3 kept
            }
            stale_left += 1;
            let r = recover_one(&disk, &dir())
                .await
                .expect("recover")
                .expect("segment");
            assert_eq!(r.len, 2);
            // Life 2: another record 2, written, never synced.
            let mut seg = r.file;
            stage(&mut seg, 2, &payload(2, LEN, 2));
            let job = seg.begin_flush().expect("job");
            disk.power_off_after(1);
            assert!(job.run().await.is_err());
            drop(seg);
            disk.crash(&mut rng);
            let r = recover_one(&disk, &dir())
                .await
                .expect("recover")
                .expect("segment");
            assert!(r.len <= 3, "seed {seed}: {} records", r.len);
            let got = read_range(&r.file, 0, r.len, 1 << 20).await.expect("read");
            for (o, p) in got {
                let salt = match o {
                    0 | 1 => 0,
                    _ => 2,
                };
                assert!(
                    p == payload(o, LEN, salt),
                    "seed {seed}: record {o} is a stale one from before the first crash"
                );
            }
        });
    }
    assert!(
        stale_left > 20,
        "the case under test happened {stale_left} times"
    );
}
