//! How a log node process is started.

use std::path::PathBuf;

/// A program and the arguments before the node's own: `trilog-bench node
/// ...` (the tools' binary, which carries the node as a hidden
/// subcommand) or `trilog-node ...`.
#[derive(Debug, Clone)]
pub struct NodeCommand {
    pub program: PathBuf,
    pub prefix: Vec<String>,
}

impl NodeCommand {
    /// This executable's hidden `node` subcommand (for a binary that has
    /// one, as `trilog-bench` does).
    pub fn this_exe() -> std::io::Result<NodeCommand> {
        Ok(NodeCommand::subcommand(std::env::current_exe()?, "node"))
    }

    /// `program subcommand ...`: a binary that runs a node as one of its
    /// subcommands (tests name `trilog-bench` this way).
    pub fn subcommand(program: impl Into<PathBuf>, subcommand: &str) -> NodeCommand {
        NodeCommand {
            program: program.into(),
            prefix: vec![subcommand.to_string()],
        }
    }
}
