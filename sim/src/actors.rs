//! The clients of a simulated run: producers and a consumer, using the
//! client library as an application would, and telling the harness what
//! they observe through [`World`].

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use trilog_client::{AppendError, ConnPool, Consumer, Producer, ProducerOptions};
use trilog_protocol::producer::{ProducerConfig, StopReason};

use crate::executor::SimHandle;
use crate::rng::Rng;

/// The log every run writes.
pub const LOG_ID: u64 = 1;

/// What the clients observed, drained by the harness after every step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Producer `p` owns the log at `epoch`.
    Ready { p: u32, epoch: u64 },
    /// Producer `p` took `count` entries so far.
    Submitted { p: u32, count: u32 },
    /// Producer `p` reported `seq` committed.
    Acked { p: u32, seq: u64, payload: Vec<u8> },
    /// One of producer `p`'s appends failed.
    Failed { p: u32, error: String },
    /// Producer `p` stopped, for `reason`.
    Stopped { p: u32, reason: Option<StopReason> },
    /// Producer `p` submitted everything and saw every outcome.
    Done { p: u32 },
    /// Producer `p`'s close ended.
    Closed { p: u32, ok: bool, why: String },
    /// The consumer, which started at `start`, was given `seq`.
    Read {
        c: u32,
        start: u64,
        seq: u64,
        payload: Vec<u8>,
    },
}

/// The events and the trace of a run.
#[derive(Default)]
pub struct World {
    pub events: Vec<Event>,
    pub trace: Vec<String>,
}

pub type SharedWorld = Rc<RefCell<World>>;

pub fn note(world: &SharedWorld, sim: &SimHandle, line: String) {
    let t = sim.now();
    world
        .borrow_mut()
        .trace
        .push(format!("{:>10.3} ms  {line}", t.as_secs_f64() * 1e3));
}

fn emit(world: &SharedWorld, e: Event) {
    world.borrow_mut().events.push(e);
}

/// How a producer of the run behaves.
#[derive(Debug, Clone, Copy)]
pub struct ProducerPlan {
    pub id: u32,
    pub takeover: bool,
    pub entries: u32,
    /// Closes the log once every entry's outcome is known.
    pub close: bool,
    pub seed: u64,
    /// Longest pause between two submits, so the entries spread over the
    /// time the faults strike.
    pub pause_max: Duration,
}

/// The payload of producer `p`'s entry `i`: unique in the run.
pub fn payload(p: u32, i: u32) -> Vec<u8> {
    format!("p{p}-e{i}").into_bytes()
}

fn options(seed: u64) -> ProducerOptions {
    ProducerOptions {
        config: ProducerConfig {
            window: 4,
            batch_entries_max: 8,
            batch_bytes_max: 64 << 10,
            ack_timeout_ms: 2_000,
            // Every other seed leaves slow replicas (the default); the
            // others wait for the ack timeout, as producers did before, so
            // both the slow switch and the long waits it cuts short (a
            // resend to a restarted replica, say) stay covered.
            slow_lag_floor_ms: if seed.is_multiple_of(2) {
                ProducerConfig::default().slow_lag_floor_ms
            } else {
                u64::MAX
            },
            ..ProducerConfig::default()
        },
        replicas: 3,
        in_flight_bytes_max: 1 << 20,
        seed,
    }
}

/// Opens (or takes over) the log, retrying while the cluster is faulty.
async fn become_producer(
    pool: &ConnPool,
    sim: &SimHandle,
    world: &SharedWorld,
    plan: ProducerPlan,
) -> Result<Producer, u64> {
    let mut attempt = 0u64;
    loop {
        let opts = options(plan.seed.wrapping_add(attempt));
        let got = if plan.takeover {
            Producer::takeover(pool.clone(), LOG_ID, opts).await
        } else {
            Producer::open(pool.clone(), LOG_ID, opts).await
        };
        match got {
            Ok(p) => return Ok(p),
            Err(e) => {
                note(world, sim, format!("producer {}: open: {e}", plan.id));
                if let Some(by_epoch) = owned_by_a_takeover(pool, plan).await {
                    return Err(by_epoch);
                }
                attempt += 1;
                sim.sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// For the first producer (the only one that opens rather than takes
/// over), whose open failed: the epoch of a takeover that created the log
/// first and holds it open (the store was down while it tried). An
/// application would stop there, superseded; retrying the open would wait
/// for that producer to close, which it may never do.
async fn owned_by_a_takeover(pool: &ConnPool, plan: ProducerPlan) -> Option<u64> {
    if plan.takeover {
        return None;
    }
    let record = pool.meta().get_log(LOG_ID).await.ok()?.record?;
    let open = record
        .segments
        .last()
        .is_some_and(|s| s.sealed_len.is_none());
    open.then_some(record.epoch)
}

/// A producer: opens or takes over the log, appends its entries at a
/// random pace, reports every outcome, closes if planned, then keeps its
/// handle until the run ends (dropping it would end its driver).
pub async fn producer(
    pool: ConnPool,
    sim: SimHandle,
    world: SharedWorld,
    plan: ProducerPlan,
    mut pace: Rng,
) {
    let p = match become_producer(&pool, &sim, &world, plan).await {
        Ok(p) => Rc::new(p),
        Err(by_epoch) => {
            let reason = Some(StopReason::Fenced { by_epoch });
            return emit(&world, Event::Stopped { p: plan.id, reason });
        }
    };
    note(
        &world,
        &sim,
        format!("producer {} at epoch {}", plan.id, p.epoch()),
    );
    emit(
        &world,
        Event::Ready {
            p: plan.id,
            epoch: p.epoch(),
        },
    );
    let outstanding = Rc::new(RefCell::new(0u32));
    let mut submitted = 0;
    for i in 0..plan.entries {
        let data = payload(plan.id, i);
        match p.submit(data.clone()).await {
            Ok(future) => {
                submitted += 1;
                emit(
                    &world,
                    Event::Submitted {
                        p: plan.id,
                        count: submitted,
                    },
                );
                *outstanding.borrow_mut() += 1;
                let (world, out, p2, id) = (world.clone(), outstanding.clone(), p.clone(), plan.id);
                sim.spawn(async move {
                    match future.await {
                        Ok(seq) => emit(
                            &world,
                            Event::Acked {
                                p: id,
                                seq,
                                payload: data,
                            },
                        ),
                        Err(e) => fail(&world, id, &p2, e),
                    }
                    *out.borrow_mut() -= 1;
                });
            }
            Err(e) => {
                fail(&world, plan.id, &p, e);
                break;
            }
        }
        let max_us = u64::try_from(plan.pause_max.as_micros()).unwrap_or(u64::MAX);
        if max_us > 0 && pace.chance(2, 3) {
            sim.sleep(Duration::from_micros(pace.between(0, max_us)))
                .await;
        }
    }
    while *outstanding.borrow() > 0 {
        sim.sleep(Duration::from_millis(5)).await;
    }
    emit(&world, Event::Done { p: plan.id });
    if !plan.close {
        // The handle lives as long as the process: dropping it would end
        // the driver.
        std::future::pending::<()>().await;
    }
    close(p, &sim, &world, plan.id).await;
}

/// Closes producer `id` once every append resolved, and says how it went.
async fn close(p: Rc<Producer>, sim: &SimHandle, world: &SharedWorld, id: u32) {
    let p = match Rc::try_unwrap(p) {
        Ok(p) => p,
        Err(p) => {
            note(world, sim, format!("producer {id}: handle still shared"));
            std::future::pending::<()>().await;
            drop(p);
            return;
        }
    };
    let result = p.close().await;
    let why = match &result {
        Ok(()) => String::new(),
        Err(e) => e.to_string(),
    };
    note(world, sim, format!("producer {id} close: {result:?}"));
    emit(
        world,
        Event::Closed {
            p: id,
            ok: result.is_ok(),
            why,
        },
    );
}

fn fail(world: &SharedWorld, id: u32, p: &Producer, e: AppendError) {
    emit(
        world,
        Event::Failed {
            p: id,
            error: e.to_string(),
        },
    );
    emit(
        world,
        Event::Stopped {
            p: id,
            reason: p.stop_reason(),
        },
    );
}

/// The consumer: reads the log from seq 0 for as long as the run lasts,
/// opening again from its position after an error.
pub async fn consumer(pool: ConnPool, sim: SimHandle, world: SharedWorld, id: u32) {
    let mut position = 0;
    loop {
        let mut c = match Consumer::open(pool.clone(), LOG_ID, position).await {
            Ok(c) => c,
            Err(e) => {
                note(&world, &sim, format!("consumer {id}: open: {e}"));
                sim.sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let start = position;
        loop {
            match c.next_batch(Duration::from_millis(300)).await {
                Ok(records) => {
                    for r in records {
                        emit(
                            &world,
                            Event::Read {
                                c: id,
                                start,
                                seq: r.seq,
                                payload: r.payload.to_vec(),
                            },
                        );
                    }
                    position = c.position();
                }
                Err(e) => {
                    note(&world, &sim, format!("consumer {id}: {e}"));
                    sim.sleep(Duration::from_millis(50)).await;
                    break;
                }
            }
        }
    }
}
