//! Command line: parses arguments, runs a command, and is the one place
//! where errors become text and exit codes.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

use crate::error::{self, bad_input};
use crate::plan::{self, Plan};
use crate::topology::{self, Backend, Topology};
use crate::validate;

/// Build GRE tunnel labs in network namespaces from a YAML file, prove they
/// work, and remove them without a trace.
#[derive(Debug, Parser)]
#[command(name = "grelab", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 ok, 1 a check or operation failed, 2 bad usage or \
                        topology file, 3 the environment cannot run it."
)]
pub struct Cli {
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
        backend: Option<Backend>,
        /// Skip the ping checks at the end.
        #[arg(long)]
        no_check: bool,
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
    /// Run the lab's checks and report; exit 1 if any fails.
    Verify {
        /// The lab (default: the only lab that is up).
        #[arg(long)]
        lab: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Also write a JUnit XML report here.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Print details of passing checks too.
        #[arg(short, long)]
        verbose: bool,
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
    /// Write an example topology to ./grelab.yaml (or --output).
    Init {
        #[arg(long, value_enum, default_value_t = Example::Basic)]
        example: Example,
        #[arg(short, long, default_value = "grelab.yaml")]
        output: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
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
}

impl Example {
    fn text(self) -> &'static str {
        match self {
            Example::Basic => include_str!("../topologies/basic.yaml"),
            Example::Gretap => include_str!("../topologies/gretap.yaml"),
            Example::Ipv6OverIpv4 => include_str!("../topologies/ipv6-over-ipv4.yaml"),
            Example::Keyed => include_str!("../topologies/keyed.yaml"),
        }
    }
}

const DEFAULT_FILE: &str = "grelab.yaml";

/// Reads, parses and validates a topology file; every problem is exit 2.
pub fn load(file: &Path) -> Result<Topology> {
    let name = file.display().to_string();
    let text = topology::read_file(file)?;
    let topo = topology::parse(&text, &name)?;
    validate::validate(&topo).map_err(|d| bad_input(validate::render(&name, &d)))?;
    Ok(topo)
}

/// Loads `file` (default ./grelab.yaml) and derives its plan.
pub fn load_plan(file: Option<&Path>, prefix: Option<&str>) -> Result<Plan> {
    let file = file.unwrap_or(Path::new(DEFAULT_FILE));
    let topo = load(file)?;
    if let Some(problem) = prefix.and_then(|p| validate::name_problem("prefix", p, 32)) {
        return Err(bad_input(format!("--prefix: {problem}")));
    }
    Ok(plan::build(&topo, prefix))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Validate { file } => {
            let file = file.unwrap_or_else(|| DEFAULT_FILE.into());
            let topo = load(&file)?;
            println!(
                "{}: ok (lab `{}`: {} nodes, {} links, {} tunnels, {} checks)",
                file.display(),
                topo.name.value,
                topo.nodes.0.len(),
                topo.links.len(),
                topo.tunnels.len(),
                topo.checks.len()
            );
            Ok(())
        }
        Command::Plan {
            file,
            naming,
            format,
        } => {
            let plan = load_plan(file.as_deref(), naming.prefix.as_deref())?;
            match format {
                PlanFormat::Script => print!("{}", plan.script()),
                PlanFormat::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
            }
            Ok(())
        }
        Command::Init {
            example,
            output,
            force,
        } => {
            if output.exists() && !force {
                return Err(bad_input(format!(
                    "`{}` exists already; pass --force to overwrite it",
                    output.display()
                )));
            }
            std::fs::write(&output, example.text())
                .map_err(|e| anyhow::anyhow!("writing `{}`: {e}", output.display()))?;
            println!(
                "wrote {} ({:?} example); next: `grelab up {}`",
                output.display(),
                example,
                output.display()
            );
            Ok(())
        }
        Command::Up { .. }
        | Command::Down { .. }
        | Command::Verify { .. }
        | Command::Status { .. }
        | Command::Exec { .. }
        | Command::Dataplane { .. } => Err(error::environment(
            "this command is not available yet in this build",
        )),
    }
}

/// Runs grelab with the process arguments and returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            let text = format!("{e:#}");
            if text.contains(": error: ") {
                eprintln!("{text}");
            } else {
                eprintln!("grelab: error: {text}");
            }
            error::exit_code(&e)
        }
    }
}
