//! A replica's refusals on the wire: the one mapping between
//! [`Refusal`] and the `(ErrorCode, value)` of an `ErrorMsg`, both ways.
//!
//! The node answers a refusal with [`to_wire`]; a client turns an error
//! answer back into the refusal its machine decides on with [`from_wire`].
//! Keeping both directions here, beside each other, is what keeps them
//! inverse: a new refusal that got a code on one side only would be taken
//! for a replica failure on the other.

use trilog_wire::message::ErrorCode;

use crate::replica::Refusal;

/// The error code and value that carry `refusal`. The value is the number
/// the code names (see `docs/wire.md`): a length or an epoch.
/// [`Refusal::SealConflict`] carries the replica's length; its earlier seal,
/// if any, travels only in the message text. [`Refusal::SealBelowCommit`]
/// carries the watermark the replica knows.
pub fn to_wire(refusal: Refusal) -> (ErrorCode, u64) {
    match refusal {
        Refusal::Sealed { len } => (ErrorCode::Sealed, len),
        Refusal::Fenced { epoch } => (ErrorCode::Fenced, epoch),
        Refusal::Gap { len } => (ErrorCode::Gap, len),
        Refusal::SealConflict { held, .. } => (ErrorCode::SealConflict, held),
        Refusal::SealBelowCommit { commit } => (ErrorCode::SealBelowCommit, commit),
        Refusal::Damaged { from } => (ErrorCode::Damaged, from),
    }
}

/// The refusal an error answer carries, or `None` for the codes that are
/// not a replica's refusal (the node failed, the request was malformed or
/// misdirected, the segment is unknown). A `SealConflict` comes back
/// without the earlier seal, which the wire does not carry.
pub fn from_wire(code: ErrorCode, value: u64) -> Option<Refusal> {
    match code {
        ErrorCode::Sealed => Some(Refusal::Sealed { len: value }),
        ErrorCode::Fenced => Some(Refusal::Fenced { epoch: value }),
        ErrorCode::Gap => Some(Refusal::Gap { len: value }),
        ErrorCode::SealConflict => Some(Refusal::SealConflict {
            held: value,
            sealed_len: None,
        }),
        ErrorCode::SealBelowCommit => Some(Refusal::SealBelowCommit { commit: value }),
        ErrorCode::Damaged => Some(Refusal::Damaged { from: value }),
        ErrorCode::NotFound
        | ErrorCode::WrongShard
        | ErrorCode::BadRequest
        | ErrorCode::Internal
        | ErrorCode::Deleted
        | ErrorCode::Full
        | ErrorCode::Forbidden => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_comes_back_as_itself() {
        for refusal in [
            Refusal::Sealed { len: 7 },
            Refusal::Fenced { epoch: 3 },
            Refusal::Gap { len: 0 },
            Refusal::SealConflict {
                held: 5,
                sealed_len: None,
            },
            Refusal::SealBelowCommit { commit: 3 },
            Refusal::Damaged { from: 9 },
        ] {
            let (code, value) = to_wire(refusal);
            assert_eq!(from_wire(code, value), Some(refusal), "{code:?}");
        }
    }

    #[test]
    fn seal_conflict_has_a_code_of_its_own() {
        let conflict = Refusal::SealConflict {
            held: 4,
            sealed_len: Some(2),
        };
        assert_eq!(to_wire(conflict), (ErrorCode::SealConflict, 4));
        assert_eq!(
            from_wire(ErrorCode::SealConflict, 4),
            Some(Refusal::SealConflict {
                held: 4,
                sealed_len: None
            })
        );
    }

    #[test]
    fn failures_are_not_refusals() {
        for code in [
            ErrorCode::NotFound,
            ErrorCode::WrongShard,
            ErrorCode::BadRequest,
            ErrorCode::Internal,
        ] {
            assert_eq!(from_wire(code, 9), None, "{code:?}");
        }
    }
}
