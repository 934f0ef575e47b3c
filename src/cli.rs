//! Command line: parses arguments, runs a command, maps errors to exit codes.

/// Runs grelab with the process arguments and returns the exit code.
pub fn main() -> i32 {
    0
}
