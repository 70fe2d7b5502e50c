//! When a node is ready for traffic: the decision behind `/readyz`, apart
//! from where its inputs come from.

/// What readiness looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// Whether the registration is current; `None`: the node registers
    /// nowhere (no `meta`), so placement cannot pick it either way.
    pub registered: Option<bool>,
    /// Below the disk reserve, or an allocation failed for space.
    pub read_only: bool,
    /// Being decommissioned.
    pub leaving: bool,
    pub shards_running: usize,
    pub shards: usize,
    /// Draining: the node is about to exit.
    pub stopping: bool,
}

/// Why the node is not ready; empty when it is: registered (placement can
/// pick it), writable (it takes new segments), every shard serving.
pub fn not_ready(r: &Readiness) -> Vec<&'static str> {
    assert!(r.shards_running <= r.shards, "{r:?}");
    let mut why = Vec::new();
    if r.registered == Some(false) {
        why.push("not registered with the metadata store");
    }
    if r.read_only {
        why.push("read-only: disk below its reserve");
    }
    if r.leaving {
        why.push("leaving: decommissioned");
    }
    if r.shards_running < r.shards {
        why.push("a shard stopped");
    }
    if r.stopping {
        why.push("stopping: draining before exit");
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_registered_writable_and_whole() {
        let ready = Readiness {
            registered: Some(true),
            read_only: false,
            leaving: false,
            shards_running: 2,
            shards: 2,
            stopping: false,
        };
        assert!(not_ready(&ready).is_empty());
        assert!(not_ready(&Readiness {
            registered: None,
            ..ready
        })
        .is_empty());
        for r in [
            Readiness {
                registered: Some(false),
                ..ready
            },
            Readiness {
                read_only: true,
                ..ready
            },
            Readiness {
                leaving: true,
                ..ready
            },
            Readiness {
                shards_running: 1,
                ..ready
            },
            Readiness {
                stopping: true,
                ..ready
            },
        ] {
            assert_eq!(not_ready(&r).len(), 1, "{r:?}");
        }
    }
}
