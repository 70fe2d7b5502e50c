//! trilog-meta: everything about the metadata store, the only part of
//! trilog that goes through consensus: which segments a log has, on which
//! nodes, sealed where, and which nodes are alive.
//!
//! - [`MetaStore`] is the store as its users see it (the producer, the
//!   consumer, the CLI, a node's registration). Every implementation keeps
//!   the semantics documented on [`store`]: versions that only grow (0 is
//!   "absent"), create-if-absent and compare-and-swap, watches that answer
//!   as soon as the version moves, leases, and an unknown outcome after an
//!   error of a CAS.
//! - The embedded store: [`MetaState`] (the pure state), [`MetaFile`] (its
//!   file, see [`persist`]), [`spawn_meta_server`] (its server, on tokio,
//!   on a thread of its own) and [`EmbeddedMeta`] (its one client).
//! - The etcd store, `EtcdMeta` in `etcd`, with the cargo feature `etcd`.
//! - [`MetaAddr`], where a store is as a user writes it (`host:port` or
//!   `etcd://host:port[,...]`), and its [`MetaAddr::connect`].
//! - [`spawn_registration`], a node's lease renewal against any store.
//! - [`frame_io`], reading frames from a tokio stream with the one
//!   decoder of `trilog_wire::decoder`; the client's connections use it too.
//!
//! What the embedded store guarantees:
//! - **Linearizable compare-and-swap per log.** One thread owns the state,
//!   and a request is applied without yielding, so requests apply one at a
//!   time. Every successful CAS takes the next value of a global revision as
//!   the log's version (as etcd's `mod_revision`): versions start at 1, only
//!   grow, and 0 means "absent".
//! - **Durable before answered.** A CAS is answered only after the whole
//!   state is on disk (temp file, fsync, rename, directory fsync; see
//!   [`persist`]). After a restart on the same directory every log is back
//!   with the same version. A corrupt file stops the store from starting;
//!   it never starts empty over it. If a save fails the store refuses every
//!   later CAS until it is restarted (the disk's state is then unknown).
//! - **Valid records only.** A CAS whose record breaks the shape of a log
//!   (consecutive segment ids, one open segment at the end, contiguous seqs,
//!   epochs, distinct replicas) is refused ([`state::validate_record`]).
//! - **Watches without polling.** A get with `wait_ms > 0` answers as soon as
//!   the log's version differs from the caller's, woken by the CAS that
//!   changed it, or when the wait ends.
//! - **One cluster id.** Created at the store's first start, saved with
//!   the logs, never changed (see [`cluster_id`]).
//! - **Leases.** A registration is alive for its lease from the time the
//!   store received it. A registration of a node id whose lease is alive
//!   and belongs to another incarnation (`NodeInfo::incarnation`) is
//!   refused ([`NodeIdTaken`]). Registrations are volatile: after a restart of the
//!   store, nodes reappear as they renew (every third of a lease, see
//!   [`register`]), so the registry is whole again within one lease.
//! - **Isolation of peers.** At most [`CONNECTIONS_MAX`] connections are
//!   served; more are closed at once. A malformed frame closes only the
//!   connection that sent it, with a logged reason; a well-framed bad
//!   request gets a `MetaError` answer. Every request gets exactly one
//!   answer, with the request's id.
//!
//! It is **not fault tolerant**: one process on one disk. When it is down,
//! no log can switch segments or change hands (appends to open segments go
//! on). It is meant for one host and for tests; production uses etcd behind
//! the same trait.

pub mod addr;
pub mod cluster_id;
pub mod embedded;
pub mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod frame_io;
pub mod limits;
pub mod lookup;
pub mod persist;
pub mod register;
pub mod server;
pub mod state;
pub mod store;
pub mod stream;

pub use addr::{HostPort, HostPortError, MetaAddr, MetaAddrError};
pub use cluster_id::{format_cluster_id, new_cluster_id, parse_cluster_id};
pub use embedded::EmbeddedMeta;
pub use error::{MetaError, NodeIdTaken};
#[cfg(feature = "etcd")]
pub use etcd::{EtcdMeta, ETCD_PREFIX_DEFAULT};
pub use limits::{
    CONNECTIONS_MAX, LEASE_MS_MAX, LEASE_MS_MIN, LOGS_MAX, META_CALL_TIMEOUT,
    META_IDLE_CONNECTIONS_MAX, NODES_MAX, SEGMENTS_PER_LOG_MAX,
};
pub use lookup::{spawn_record_lookups, RecordLookups};
pub use persist::{MetaFile, PersistError};
pub use register::{
    spawn_etcd_registration, spawn_registration, spawn_registration_at,
    spawn_registration_refreshed, FirstRegistration, InfoRefresh, ModeReport, RegistrationHandle,
    RegistrationWatch,
};
pub use server::{spawn_meta_server, spawn_meta_server_tls, MetaServerError, MetaServerHandle};
pub use state::{CasError, MetaState, ModeError, RecordError, RegisterError};
pub use store::{CasOutcome, MetaFuture, MetaStore, Versioned};
