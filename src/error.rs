//! The one place where failures get their exit codes.

use std::fmt;

/// What kind of failure ended a command; its number is the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A check failed, or an operation on the lab failed.
    Failed = 1,
    /// Bad usage or a bad topology file.
    BadInput = 2,
    /// The environment cannot run it: not root, no such lab, a backend missing.
    Environment = 3,
}

/// An error that carries its exit code through `anyhow` context layers.
#[derive(Debug)]
pub struct Coded {
    pub exit: Exit,
    pub message: String,
    /// The message is a whole report already (`file:line:col: error: ...`),
    /// shown as it is rather than after `grelab: error: `.
    pub rendered: bool,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// A bad-input error (exit 2).
pub fn bad_input(message: impl Into<String>) -> anyhow::Error {
    Coded {
        exit: Exit::BadInput,
        message: message.into(),
        rendered: false,
    }
    .into()
}

/// A bad-input error (exit 2) whose message is a whole report already, each
/// problem placed in the file: `file:line:col: error: ...`.
pub fn rendered(message: impl Into<String>) -> anyhow::Error {
    Coded {
        exit: Exit::BadInput,
        message: message.into(),
        rendered: true,
    }
    .into()
}

/// An environment error (exit 3).
pub fn environment(message: impl Into<String>) -> anyhow::Error {
    Coded {
        exit: Exit::Environment,
        message: message.into(),
        rendered: false,
    }
    .into()
}

/// A failed check (exit 1).
pub fn check_failed(message: impl Into<String>) -> anyhow::Error {
    Coded {
        exit: Exit::Failed,
        message: message.into(),
        rendered: false,
    }
    .into()
}

/// Whether `err` is shown as it is: its first coded cause is rendered already.
pub fn is_rendered(err: &anyhow::Error) -> bool {
    err.chain()
        .find_map(|e| e.downcast_ref::<Coded>())
        .is_some_and(|c| c.rendered)
}

/// The exit code for `err`: the first coded cause, else 1.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    err.chain()
        .find_map(|e| e.downcast_ref::<Coded>())
        .map_or(Exit::Failed, |c| c.exit) as i32
}
