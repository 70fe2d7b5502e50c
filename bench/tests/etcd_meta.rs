//! trilog on etcd, end to end: a 3-member etcd cluster (Debian's
//! `etcd-server`) as the metadata store, 4 real `trilog-node` processes
//! registering there (`--meta etcd://...`), a producer, a takeover by a
//! second producer while the first one still writes, and a consumer that
//! reads every acknowledged entry back once, in order.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use trilog_baselines::etcd::EtcdCluster;
use trilog_client::{AppendError, ConnPool, EtcdMeta, MetaStore, Producer, ProducerOptions};
use trilog_testkit::payload::make_payload;
use trilog_testkit::ports::free_port;
use trilog_testkit::reader::Reader;
use trilog_testkit::verify::verify;
use trilog_testkit::wait::wait_for;

/// Node processes, killed when dropped.
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn_node(id: u64, dir: &std::path::Path, meta_url: &str) -> Child {
    let port = free_port().expect("a free port");
    Command::new(PathBuf::from(env!("CARGO_BIN_EXE_trilog-bench")))
        .arg("node")
        .args(["--node-id", &id.to_string()])
        .arg("--data-dir")
        .arg(dir.join(format!("node-{id}")))
        .args(["--port", &port.to_string()])
        .args(["--meta", meta_url])
        .args(["--lease-ms", "2000"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn a node")
}

async fn wait_alive(meta: &dyn MetaStore, n: usize) {
    let alive = &AtomicUsize::new(0);
    let what = format!("{n} nodes registered in etcd");
    let registered = wait_for(&what, Duration::from_secs(30), move || async move {
        let now = meta
            .list_nodes(false)
            .await
            .map(|v| v.iter().filter(|s| s.alive).count())
            .unwrap_or(0);
        alive.store(now, Ordering::SeqCst);
        (now >= n).then_some(())
    })
    .await;
    registered.unwrap_or_else(|e| panic!("{e}: only {}", alive.load(Ordering::SeqCst)));
}

/// Producer 1 appends 200 entries and has 100 more in flight when
/// producer 2 takes the log over; producer 2 appends 100 more and closes
/// the log. Returns seq -> id of every acknowledged append, and the ids
/// whose outcome is unknown.
async fn write_across_a_takeover(pool: &ConnPool, log_id: u64) -> (HashMap<u64, u64>, Vec<u64>) {
    let p1 = Producer::open(pool.clone(), log_id, ProducerOptions::default())
        .await
        .expect("open");
    let mut committed: HashMap<u64, u64> = HashMap::new();
    for id in 0..200 {
        let seq = p1
            .append(make_payload(id, 120))
            .await
            .expect("append before the takeover");
        committed.insert(seq, id);
    }
    let mut in_flight = Vec::new();
    for id in 200..300 {
        in_flight.push((id, p1.submit(make_payload(id, 120)).await));
    }
    let p2 = Producer::takeover(pool.clone(), log_id, ProducerOptions::default())
        .await
        .expect("takeover");
    let mut unknown = Vec::new();
    for (id, f) in in_flight {
        match f {
            Ok(f) => match f.await {
                Ok(seq) => {
                    committed.insert(seq, id);
                }
                Err(AppendError::Indeterminate { .. }) => unknown.push(id),
                Err(e) => panic!("append {id}: {e}"),
            },
            Err(AppendError::Indeterminate { .. }) => unknown.push(id),
            Err(e) => panic!("submit {id}: {e}"),
        }
    }
    for id in 300..400 {
        let seq = p2
            .append(make_payload(id, 120))
            .await
            .expect("append after the takeover");
        committed.insert(seq, id);
    }
    p2.close().await.expect("close");
    (committed, unknown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_on_etcd_survives_a_takeover_and_reads_back() {
    let etcd = EtcdCluster::start(3)
        .await
        .expect("etcd (apt-get install etcd-server)");
    let endpoints: Vec<String> = etcd.client_addrs.iter().map(|a| a.to_string()).collect();
    let url = format!("etcd://{}", endpoints.join(","));
    let dir = tempfile::tempdir().expect("dir");
    let _nodes = Nodes((1..=4).map(|id| spawn_node(id, dir.path(), &url)).collect());
    let meta: Arc<dyn MetaStore> =
        Arc::new(EtcdMeta::connect(&endpoints).await.expect("connect etcd"));
    wait_alive(meta.as_ref(), 4).await;
    let pool = ConnPool::new(meta.clone());

    // Producer 1 writes, and keeps writing while producer 2 takes over.
    let (committed, unknown) = write_across_a_takeover(&pool, 3).await;

    let record = meta
        .get_log(3)
        .await
        .expect("get")
        .record
        .expect("the log is in etcd");
    assert_eq!(record.epoch, 2, "one takeover");
    assert!(record.segments.len() >= 2, "{record:?}");
    assert!(record.segments.iter().all(|s| s.sealed_len.is_some()));
    let end = record
        .segments
        .last()
        .map(|s| s.first_seq + s.sealed_len.unwrap_or(0))
        .unwrap_or(0);

    let reads = match Reader::start(pool, 3, 0)
        .await
        .expect("consumer")
        .finish(end, Duration::from_secs(20))
        .await
    {
        Ok(r) => r.reads,
        Err((why, _)) => panic!("{why}"),
    };
    let v = verify(&committed, &reads, &unknown);
    assert_eq!(v.committed, committed.len() as u64, "{v:?}");
    assert_eq!(
        (v.lost, v.duplicated, v.out_of_order, v.phantom),
        (0, 0, 0, 0),
        "{v:?}"
    );
    drop(etcd);
}
