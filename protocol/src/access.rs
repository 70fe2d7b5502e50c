//! Who may send what, when every connection carries a certificate: the
//! role a certificate names (its subject's OU) decides which requests the
//! node and the metadata store serve to it.
//!
//! - `node`: a log node. It registers, and it repairs: it writes copies
//!   (fence, append, seal) on other nodes, reads from them, and publishes
//!   a finished copy by compare-and-swap of the log's record.
//! - `producer`: a writer of logs and the operator's tool. It appends,
//!   fences, seals, takes over, trims and deletes, changes log records and
//!   node modes (decommission).
//! - `reader`: reads entries and metadata, and changes nothing.
//!
//! Everything not granted is refused, answers included: a frame of a kind
//! only a server sends is refused from any peer.

use trilog_wire::Kind;

/// A certificate's role (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Node,
    Producer,
    Reader,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Node, Role::Producer, Role::Reader];

    /// The role an OU names (`node`, `producer`, `reader`; exact, lower
    /// case).
    pub fn from_ou(ou: &str) -> Option<Role> {
        match ou {
            "node" => Some(Role::Node),
            "producer" => Some(Role::Producer),
            "reader" => Some(Role::Reader),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Producer => "producer",
            Role::Reader => "reader",
        }
    }

    /// Whether a peer of this role may send a request of `kind`.
    pub fn may_send(self, kind: Kind) -> bool {
        use Kind::*;
        match kind {
            // Every peer introduces itself and reads.
            Hello | Read | MetaGetLog | MetaListLogs | MetaListNodes | MetaGetCluster
            | MetaGetNodeModes => true,
            // Writes to replicas: producers, and nodes copying a repair.
            Append | Fence | Seal | Watermark | DeleteSegment => {
                matches!(self, Role::Producer | Role::Node)
            }
            // A log's record: producers, and nodes publishing a repair.
            MetaCasLog => matches!(self, Role::Producer | Role::Node),
            // A node's lease: only nodes register and deregister.
            MetaRegister | MetaDeregister => self == Role::Node,
            MetaSetNodeMode => self == Role::Producer,
            // What only a server sends.
            HelloOk | AppendAck | ReadResponse | SealAck | FenceAck | ErrorMsg
            | DeleteSegmentAck | MetaLog | MetaCasResult | MetaLogs | MetaRegistered
            | MetaNodes | MetaError | MetaCluster | MetaRegisterRefused | MetaNodeModes
            | MetaDeregistered => false,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_change_nothing_and_only_nodes_register() {
        for &kind in Kind::ALL {
            if Role::Reader.may_send(kind) {
                assert!(
                    matches!(
                        kind,
                        Kind::Hello
                            | Kind::Read
                            | Kind::MetaGetLog
                            | Kind::MetaListLogs
                            | Kind::MetaListNodes
                            | Kind::MetaGetCluster
                            | Kind::MetaGetNodeModes
                    ),
                    "a reader may send {kind:?}"
                );
            }
            // Whatever a reader may, every role may.
            if Role::Reader.may_send(kind) {
                assert!(Role::ALL.iter().all(|r| r.may_send(kind)), "{kind:?}");
            }
        }
        let registrants: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| r.may_send(Kind::MetaRegister))
            .collect();
        assert_eq!(registrants, [Role::Node]);
        let deregistrants: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| r.may_send(Kind::MetaDeregister))
            .collect();
        assert_eq!(deregistrants, [Role::Node]);
        assert!(!Role::Node.may_send(Kind::MetaSetNodeMode));
        assert!(Role::Producer.may_send(Kind::MetaSetNodeMode));
        assert!(!Role::Producer.may_send(Kind::MetaRegister));
        for role in Role::ALL {
            assert!(!role.may_send(Kind::AppendAck) && !role.may_send(Kind::MetaRegistered));
            assert_eq!(Role::from_ou(role.name()), Some(role));
        }
        assert_eq!(Role::from_ou("Node"), None);
        assert_eq!(Role::from_ou("admin"), None);
    }
}
