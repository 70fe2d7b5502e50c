//! The label sets of the node's metric families, and the names their
//! values take (snake case, as Prometheus label values usually are).

use prometheus_client::encoding::EncodeLabelSet;
use trilog_wire::message::ErrorCode;

/// A shard's metrics carry its index.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    pub shard: u32,
}

/// An error answer's code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: &'static str,
}

/// Why something happened or ended (a connection closed, a repair ended).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// How something ended (a repair job).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Which operation on the disk.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

/// The build, as an info metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    pub node_id: u64,
    pub zone: String,
}

/// Every error code, for counters made before the first error of each
/// kind (a series that appears only once it is non-zero breaks `rate()`).
pub const ERROR_CODES: [ErrorCode; 13] = [
    ErrorCode::Sealed,
    ErrorCode::Fenced,
    ErrorCode::Gap,
    ErrorCode::NotFound,
    ErrorCode::WrongShard,
    ErrorCode::BadRequest,
    ErrorCode::Internal,
    ErrorCode::SealConflict,
    ErrorCode::SealBelowCommit,
    ErrorCode::Damaged,
    ErrorCode::Deleted,
    ErrorCode::Full,
    ErrorCode::Forbidden,
];

/// An error code's label value. Exhaustive: a new code needs a name here.
pub fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Sealed => "sealed",
        ErrorCode::Fenced => "fenced",
        ErrorCode::Gap => "gap",
        ErrorCode::NotFound => "not_found",
        ErrorCode::WrongShard => "wrong_shard",
        ErrorCode::BadRequest => "bad_request",
        ErrorCode::Internal => "internal",
        ErrorCode::SealConflict => "seal_conflict",
        ErrorCode::SealBelowCommit => "seal_below_commit",
        ErrorCode::Damaged => "damaged",
        ErrorCode::Deleted => "deleted",
        ErrorCode::Full => "full",
        ErrorCode::Forbidden => "forbidden",
    }
}
