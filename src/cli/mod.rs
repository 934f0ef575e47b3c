//! Command line: parses arguments, runs a command (a file per command), and
//! is the one place where errors become text and exit codes.
//! It may import every layer; nothing imports it. It never holds what a
//! layer owns: a command file only reads its arguments, calls, and prints.

mod capture;
mod docs;
mod down;
mod exec;
mod explain;
mod generate;
mod graph;
mod impair;
mod init;
mod labs;
mod logs;
mod output;
mod plan;
mod restart;
mod schema;
mod status;
mod up;
mod validate;
mod verify;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

use crate::error;
use crate::model::Backend;

/// Build GRE tunnel labs in network namespaces from a YAML file, prove they
/// work, and remove them without a trace.
#[derive(Debug, Parser)]
#[command(name = "grelab", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 ok, 1 a check or operation failed, 2 bad usage or \
                        topology file, 3 the environment cannot run it."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the lab described by FILE (default ./grelab.yaml), then run its ping checks.
    Up {
        file: Option<PathBuf>,
        #[command(flatten)]
        naming: Naming,
        /// Which GRE implementation builds the tunnels (overrides the file).
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
        /// Skip the ping checks at the end.
        #[arg(long)]
        no_check: bool,
        /// Change nothing: print what `up` would do to the running lab (the
        /// difference from the plan it is up from, as iproute2 commands), or
        /// the whole plan when the lab is not up.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: the commands (script) or the changes as JSON.
        #[arg(long, value_enum, default_value_t = PlanFormat::Script, requires = "dry_run")]
        format: PlanFormat,
    },
    /// Remove a lab: the one of FILE, --lab NAME, --all, or the only lab that is up.
    Down {
        file: Option<PathBuf>,
        #[command(flatten)]
        naming: Naming,
        /// The lab's name (as `grelab status` shows it).
        #[arg(long, conflicts_with = "file")]
        lab: Option<String>,
        /// Every grelab lab on this host.
        #[arg(long, conflicts_with_all = ["file", "lab"])]
        all: bool,
    },
    /// Build one node of a running lab again (its namespace, the links to it,
    /// its tunnel ends, its programs), the rest running on.
    Restart {
        node: String,
        /// The lab (default: the only lab that is up).
        #[arg(long)]
        lab: Option<String>,
    },
    /// Run the lab's checks and report; exit 1 if any fails.
    Verify {
        /// The lab (default: the only lab that is up).
        #[arg(long)]
        lab: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Also write a JUnit XML report here. A report of an earlier run is
        /// replaced (atomically); a symbolic link is refused, never followed.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Print details of passing checks too.
        #[arg(short, long)]
        verbose: bool,
        /// Only the file's checks, not the derived ones (underlay, tunnel pings, mtu, encap).
        #[arg(long)]
        no_derived: bool,
    },
    /// Check FILE (default ./grelab.yaml) and report every error at once.
    Validate { file: Option<PathBuf> },
    /// Print what `up` would do: an iproute2 script (or JSON).
    Plan {
        file: Option<PathBuf>,
        #[command(flatten)]
        naming: Naming,
        #[arg(long, value_enum, default_value_t = PlanFormat::Script)]
        format: PlanFormat,
    },
    /// List the labs that are up, their namespaces and dataplane.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Run a command inside a node's namespace.
    Exec {
        node: String,
        /// The lab (default: the only lab that is up).
        #[arg(long)]
        lab: Option<String>,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Show packets on a node's interface, decoded like `tcpdump -v` (no tcpdump needed).
    Capture {
        node: String,
        iface: String,
        #[arg(long)]
        lab: Option<String>,
        /// Stop after this many packets.
        #[arg(short = 'c', long, default_value_t = 10)]
        count: u32,
        /// Stop after this many seconds (0 to 86400).
        #[arg(long, default_value_t = 10.0, value_parser = capture::seconds, allow_hyphen_values = true)]
        timeout: f64,
        /// Also write the packets to this pcap file (Wireshark, tcpdump -r), as
        /// they arrive. An existing file is kept unless --force; a symbolic
        /// link is refused, never followed.
        #[arg(short = 'w', long)]
        write: Option<PathBuf>,
        /// Replace an existing --write file (atomically, when the capture ends).
        #[arg(long, requires = "write")]
        force: bool,
    },
    /// Change the impairments of a running lab's interface (egress): the
    /// parameters given change, the others keep their values; a value of 0
    /// removes one. `--show` lists every impairment in force.
    Impair(impair::Args),
    /// Write an example topology to ./grelab.yaml (or --output).
    Init {
        #[arg(long, value_enum, default_value_t = Example::Basic)]
        example: Example,
        /// Where to write. An existing file is kept unless --force; a symbolic
        /// link is refused, never followed.
        #[arg(short, long, default_value = "grelab.yaml")]
        output: PathBuf,
        /// Replace an existing file (atomically).
        #[arg(long)]
        force: bool,
    },
    /// Draw the lab: nodes, veth links with their addresses, tunnels above
    /// the underlay path they cross (Graphviz dot or Mermaid). With --lab,
    /// a running lab's backends and fast-path state too.
    Graph {
        file: Option<PathBuf>,
        /// A lab that is up (default without FILE: the only lab up, or ./grelab.yaml).
        #[arg(long, conflicts_with = "file")]
        lab: Option<String>,
        #[command(flatten)]
        naming: Naming,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Explain each tunnel as the tutorial does: the packet's layers and
    /// their bytes, the MTU arithmetic, TTL, DF, protocol 47, the tcpdump
    /// reading of a ping across it, and which backend carries it.
    Explain {
        /// `[FILE] [TUNNEL]`: the topology (default ./grelab.yaml) and one
        /// tunnel's name (default every tunnel).
        #[arg(num_args = 0..=2)]
        args: Vec<String>,
        #[command(flatten)]
        naming: Naming,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Write man pages (grelab.1 and one per command) into DIR.
    Man {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Print the JSON Schema of the topology file (what editors complete and
    /// check with; the repository carries it as schema/grelab.schema.json).
    Schema,
    /// Print a generated scale topology (YAML) on stdout.
    Generate {
        #[command(subcommand)]
        shape: Shape,
    },
    /// Show the output of a node's programs (`run` in the topology).
    Logs {
        node: String,
        /// One program (default: all of the node's).
        name: Option<String>,
        /// The lab (default: the only lab that is up).
        #[arg(long)]
        lab: Option<String>,
        /// Keep printing what they write, until interrupted.
        #[arg(short, long)]
        follow: bool,
    },
    /// The keeper of a lab's programs, which `up` starts (internal).
    #[command(hide = true)]
    Keeper {
        #[arg(long)]
        spec: PathBuf,
    },
    /// The userspace GRE dataplane process that `up` starts (internal).
    #[command(hide = true)]
    Dataplane {
        #[arg(long)]
        spec: PathBuf,
        #[arg(long)]
        stats: PathBuf,
        #[arg(long)]
        ready_fd: Option<i32>,
    },
}

#[derive(Debug, Subcommand)]
enum Shape {
    /// A hub and N spokes: a veth and a GRE tunnel per spoke.
    HubSpoke {
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=4000))]
        spokes: u32,
        /// The lab's name.
        #[arg(long, default_value = "hub")]
        name: String,
        /// Underlay only: no tunnels.
        #[arg(long)]
        no_tunnels: bool,
        #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
        backend: BackendArg,
    },
    /// N nodes around a core router, a GRE tunnel between every pair.
    FullMesh {
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(2..=40))]
        nodes: u32,
        #[arg(long, default_value = "mesh")]
        name: String,
        #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
        backend: BackendArg,
    },
}

#[derive(Debug, clap::Args)]
struct Naming {
    /// Prefix for namespace and lab names, so one file can run as several labs.
    #[arg(long)]
    prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GraphFormat {
    Dot,
    Mermaid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlanFormat {
    Script,
    Json,
}

/// The example topologies, built into the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Example {
    /// The seed lab: host1 - internet - host2 and a GRE tunnel.
    Basic,
    /// Ethernet over GRE between the two hosts.
    Gretap,
    /// An IPv6 overlay across the IPv4 underlay.
    Ipv6OverIpv4,
    /// Two GRE tunnels between one pair of hosts, told apart by key.
    Keyed,
    /// Two LANs in one subnet, bridged across the internet by gretap.
    L2Islands,
}

/// `--backend`: the command line's names and help for [`Backend`], which
/// knows nothing of clap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// Kernel GRE where the kernel has it, else userspace.
    Auto,
    /// The kernel's ip_gre / ip6_gre.
    Kernel,
    /// grelab's userspace dataplane (TUN/TAP + raw sockets).
    Userspace,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Backend {
        match b {
            BackendArg::Auto => Backend::Auto,
            BackendArg::Kernel => Backend::Kernel,
            BackendArg::Userspace => Backend::Userspace,
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Validate { file } => validate::run(file),
        Command::Plan {
            file,
            naming,
            format,
        } => plan::run(file.as_deref(), naming.prefix.as_deref(), format),
        Command::Init {
            example,
            output,
            force,
        } => init::run(example, &output, force),
        Command::Up {
            file,
            naming,
            dry_run: true,
            format,
            ..
        } => up::dry_run(file, naming.prefix.as_deref(), format),
        Command::Up {
            file,
            naming,
            backend,
            no_check,
            ..
        } => up::run(
            file,
            naming.prefix.as_deref(),
            backend.map(Backend::from),
            no_check,
        ),
        Command::Down {
            file,
            naming,
            lab,
            all,
        } => down::run(file, naming.prefix.as_deref(), lab, all),
        Command::Status { format } => status::run(format),
        Command::Restart { node, lab } => restart::run(lab, &node),
        Command::Exec { node, lab, cmd } => exec::run(lab, &node, &cmd),
        Command::Capture {
            node,
            iface,
            lab,
            count,
            timeout,
            write,
            force,
        } => capture::run(lab, &node, &iface, count, timeout, write, force),
        Command::Verify {
            lab,
            format,
            junit,
            verbose,
            no_derived,
        } => verify::run(lab, format, junit, verbose, no_derived),
        Command::Generate { shape } => generate::run(shape),
        Command::Impair(args) => impair::run(args),
        Command::Graph {
            file,
            lab,
            naming,
            format,
        } => graph::run(file.as_deref(), lab, naming.prefix.as_deref(), format),
        Command::Explain { args, naming } => explain::run(&args, naming.prefix.as_deref()),
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { dir } => docs::man(&dir),
        Command::Schema => schema::run(),
        Command::Logs {
            node,
            name,
            lab,
            follow,
        } => logs::run(lab, &node, name.as_deref(), follow),
        Command::Keeper { spec } => crate::lab::keeper::serve(&spec),
        Command::Dataplane {
            spec,
            stats,
            ready_fd,
        } => crate::dataplane::serve(&spec, &stats, ready_fd),
    }
}

/// Runs grelab with the process arguments and returns the exit code.
pub fn main() -> i32 {
    // A closed pipe (`grelab plan | head`) ends output quietly, as for any
    // Unix tool; the dataplane keeps Rust's default and handles its own signals.
    if std::env::args().nth(1).as_deref() != Some("dataplane") {
        // SAFETY: resetting a signal disposition before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let cli = Cli::parse();
    // What grelab creates as root is never group- or world-writable,
    // whatever umask it inherits; `exec` hands the user's on unchanged.
    if !matches!(cli.command, Command::Exec { .. }) {
        let mask = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        nix::sys::stat::umask(mask | nix::sys::stat::Mode::from_bits_truncate(0o022));
    }
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}", error_text(&e));
            error::exit_code(&e)
        }
    }
}

/// What stderr shows for `e`: a rendered report (`file:line:col: error: ...`)
/// as it is, any other error after `grelab: error: `.
fn error_text(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    if error::is_rendered(e) {
        text
    } else {
        format!("grelab: error: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_backend_value_names_the_backend_it_maps_to() {
        for arg in BackendArg::value_variants() {
            let name = arg.to_possible_value().unwrap();
            assert_eq!(name.get_name(), Backend::from(*arg).as_str());
        }
        assert_eq!(BackendArg::value_variants().len(), 3);
    }

    #[test]
    fn the_error_prefix_follows_the_error_not_its_text() {
        let report = error::rendered("t.yaml:1:7: error: the lab has no nodes\n1 error in t.yaml");
        assert_eq!(
            error_text(&report),
            "t.yaml:1:7: error: the lab has no nodes\n1 error in t.yaml"
        );
        // A name the user chose may hold the words a report holds.
        let missing = error::bad_input("cannot read topology file `x: error: y.yaml`");
        assert_eq!(
            error_text(&missing),
            "grelab: error: cannot read topology file `x: error: y.yaml`"
        );
        let wrapped = error::rendered("f.yaml:2:1: error: bad").context("loading");
        assert_eq!(error_text(&wrapped), "loading: f.yaml:2:1: error: bad");
    }
}
