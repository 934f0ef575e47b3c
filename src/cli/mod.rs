//! Command line: parses arguments, runs a command, and is the one place
//! where errors become text and exit codes.

pub mod output;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

use crate::error::{self, bad_input};
use crate::model::Backend;
use crate::plan::{self, Plan};
use crate::topology::{self, Topology};
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
        backend: Option<BackendArg>,
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
        #[arg(long, default_value_t = 10.0, value_parser = seconds, allow_hyphen_values = true)]
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
    /// Print a generated scale topology (YAML) on stdout.
    Generate {
        #[command(subcommand)]
        shape: Shape,
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
            Example::Basic => include_str!("../../topologies/basic.yaml"),
            Example::Gretap => include_str!("../../topologies/gretap.yaml"),
            Example::Ipv6OverIpv4 => include_str!("../../topologies/ipv6-over-ipv4.yaml"),
            Example::Keyed => include_str!("../../topologies/keyed.yaml"),
        }
    }
}

const DEFAULT_FILE: &str = "grelab.yaml";

/// Reads, parses and validates a topology file; every problem is exit 2.
pub fn load(file: &Path) -> Result<Topology> {
    let name = file.display().to_string();
    let text = topology::read_file(file)?;
    let topo = topology::parse(&text, &name)?;
    validate::validate(&topo).map_err(|d| error::rendered(validate::render(&name, &d)))?;
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
            crate::cli::output::write(&output, existing(force), example.text().as_bytes())?;
            println!(
                "wrote {} ({:?} example); next: `grelab up {}`",
                output.display(),
                example,
                output.display()
            );
            Ok(())
        }
        Command::Up {
            file,
            naming,
            backend,
            no_check,
        } => {
            let plan = load_plan(file.as_deref(), naming.prefix.as_deref())?;
            let source = file.unwrap_or_else(|| DEFAULT_FILE.into());
            let source = std::fs::canonicalize(&source).unwrap_or(source);
            let out = crate::lab::up::up(&plan, Some(&source), backend.map(Backend::from))?;
            if out.unchanged {
                println!("lab `{}` is up already, unchanged", plan.lab);
            } else {
                for note in &out.notes {
                    println!("{note}");
                }
                let tunnels = plan.tunnels().count();
                println!(
                    "lab `{}` is up: {} namespaces, {} links, {} tunnel ends in {:.0?}",
                    plan.lab,
                    plan.nodes.len(),
                    plan.steps
                        .iter()
                        .filter(|s| matches!(s, plan::Step::Veth { .. }))
                        .count(),
                    tunnels,
                    out.elapsed
                );
            }
            if !no_check {
                up_checks(&plan);
            }
            Ok(())
        }
        Command::Down {
            file,
            naming,
            lab,
            all,
        } => {
            let labs = if all {
                let mut labs = crate::lab::state::labs()?;
                labs.extend(crate::lab::teardown::marked_labs()?);
                labs.sort();
                labs.dedup();
                labs
            } else if let Some(lab) = lab {
                vec![crate::lab::state::check_lab(&lab)?.to_owned()]
            } else if file.is_some() || naming.prefix.is_some() || Path::new(DEFAULT_FILE).exists()
            {
                vec![load_plan(file.as_deref(), naming.prefix.as_deref())?.lab]
            } else {
                // The one lab up: by its record, or (record lost) by its marks.
                let mut labs = crate::lab::state::labs()?;
                if labs.is_empty() {
                    labs = crate::lab::teardown::marked_labs()?;
                }
                if labs.len() > 1 {
                    return Err(bad_input(format!(
                        "several labs are up ({}); say which with --lab NAME, or --all",
                        labs.join(", ")
                    )));
                }
                labs
            };
            crate::sys::netns::check_privileges()
                .map_err(|e| error::environment(format!("{e:#}")))?;
            if labs.is_empty() {
                println!("no lab is up");
            }
            for lab in labs {
                match crate::lab::teardown::down(&lab)? {
                    None => println!("lab `{lab}` is not up"),
                    Some(r) => {
                        println!(
                            "lab `{lab}` is down: {} namespaces removed{}{}",
                            r.namespaces.len(),
                            if r.dataplane {
                                ", dataplane stopped"
                            } else {
                                ""
                            },
                            match r.processes {
                                0 => String::new(),
                                1 => ", 1 process stopped".to_owned(),
                                n => format!(", {n} processes stopped"),
                            }
                        );
                        if !r.placeholders.is_empty() {
                            println!(
                                "  removed {} empty namespace files an interrupted run left: {}",
                                r.placeholders.len(),
                                r.placeholders.join(", ")
                            );
                        }
                        for ns in r.skipped {
                            println!(
                                "  left namespace `{ns}` alone: it is not the namespace this lab created"
                            );
                        }
                    }
                }
            }
            Ok(())
        }
        Command::Status { format } => status(format),
        Command::Exec { node, lab, cmd } => exec(lab, &node, &cmd),
        Command::Capture {
            node,
            iface,
            lab,
            count,
            timeout,
            write,
            force,
        } => {
            let ns = node_ns(lab, &node)?;
            let pcap = write
                .map(|p| crate::cli::output::create(&p, existing(force)))
                .transpose()?;
            capture(&ns, &iface, count, timeout, pcap)
        }
        Command::Verify {
            lab,
            format,
            junit,
            verbose,
            no_derived,
        } => {
            let lab = the_lab(lab)?;
            let s = record(&lab)?;
            s.trust();
            if let Some(pid) = s
                .dataplane
                .filter(|id| !crate::dataplane::is_running(id))
                .map(|id| id.pid)
            {
                eprintln!(
                    "warning: the lab's userspace dataplane (pid {pid}) is not running; `grelab up` restarts it"
                );
            }
            let opts = crate::check::Options {
                derived: !no_derived,
                only_ping: false,
            };
            // Opened first, so that a path that is refused is refused at once.
            let report = junit
                .map(|p| {
                    crate::cli::output::create(&p, crate::cli::output::Existing::Replace)
                        .map(|o| (p, o))
                })
                .transpose()?;
            let results = crate::check::run(&s.plan, opts);
            if let Some((path, mut out)) = report {
                use std::io::Write;
                out.write_all(crate::check::report::junit(&lab, &results).as_bytes())
                    .map_err(|e| {
                        anyhow::anyhow!("writing the JUnit report {}: {e}", path.display())
                    })?;
                out.commit()?;
            }
            match format {
                Format::Human => {
                    print!(
                        "{}",
                        with_newline(crate::check::report::human(&results, verbose))
                    )
                }
                Format::Json => println!("{}", crate::check::report::json(&lab, &results)),
            }
            let failed = results
                .iter()
                .filter(|r| r.status != crate::check::report::Status::Pass)
                .count();
            if failed > 0 {
                return Err(error::check_failed(format!(
                    "{failed} of {} checks failed",
                    results.len()
                )));
            }
            Ok(())
        }
        Command::Generate { shape } => {
            let (name, yaml) = match shape {
                Shape::HubSpoke {
                    spokes,
                    name,
                    no_tunnels,
                    backend,
                } => {
                    let y = crate::topology::generate::hub_spoke(
                        &name,
                        spokes,
                        !no_tunnels,
                        Backend::from(backend),
                    );
                    (name, y)
                }
                Shape::FullMesh {
                    nodes,
                    name,
                    backend,
                } => {
                    let y =
                        crate::topology::generate::full_mesh(&name, nodes, Backend::from(backend));
                    (name, y)
                }
            };
            if let Some(p) = validate::name_problem("lab name", &name, 32) {
                return Err(bad_input(format!("--name: {p}")));
            }
            print!("{yaml}");
            Ok(())
        }
        Command::Dataplane {
            spec,
            stats,
            ready_fd,
        } => crate::dataplane::serve(&spec, &stats, ready_fd),
    }
}

/// The ping checks that end `up`: reported loudly, but `verify` is the
/// command whose exit code asserts.
fn up_checks(plan: &Plan) {
    let opts = crate::check::Options {
        derived: false,
        only_ping: true,
    };
    let results = crate::check::run(plan, opts);
    if results.is_empty() {
        return;
    }
    print!(
        "{}",
        with_newline(crate::check::report::human(&results, false))
    );
    if results
        .iter()
        .any(|r| r.status != crate::check::report::Status::Pass)
    {
        eprintln!(
            "WARNING: the lab is up, but a check failed (see above); `grelab verify` for all checks"
        );
    }
}

fn with_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// The lab a command is about: the one given, or the only one up.
fn the_lab(lab: Option<String>) -> Result<String> {
    if let Some(lab) = lab {
        return Ok(crate::lab::state::check_lab(&lab)?.to_owned());
    }
    let labs = crate::lab::state::labs()?;
    match labs.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(error::environment(
            "no lab is up; start one with `grelab up FILE`",
        )),
        many => Err(bad_input(format!(
            "several labs are up ({}); say which with --lab NAME",
            many.join(", ")
        ))),
    }
}

/// The record of lab `lab`, or exit 3 saying it is not up.
fn record(lab: &str) -> Result<crate::lab::state::State> {
    crate::lab::state::load(lab)?
        .ok_or_else(|| error::environment(format!("lab `{lab}` is not up (see `grelab status`)")))
}

fn status(format: Format) -> Result<()> {
    let mut labs = Vec::new();
    for lab in crate::lab::state::labs()? {
        match crate::lab::state::load(&lab) {
            Ok(Some(s)) => {
                let missing = s.missing();
                let dir = crate::lab::state::lab_dir(&lab);
                let dataplane = s
                    .dataplane
                    .map(|id| (id.pid, crate::dataplane::is_running(&id)));
                // Which userspace ends the fast path carries, if the
                // dataplane runs and says.
                let stats = match dataplane {
                    Some((_, true)) => {
                        crate::dataplane::read_stats(&crate::dataplane::stats_path(&dir)).ok()
                    }
                    _ => None,
                };
                let fast = |ns: &str, dev: &str| {
                    stats.as_ref().and_then(|st| {
                        st.tunnels
                            .iter()
                            .find(|t| t.netns == ns && t.name == dev)
                            .map(|t| t.fast_path)
                    })
                };
                let health = if !missing.is_empty() {
                    format!(
                        "broken: namespaces gone or replaced: {}",
                        missing.join(", ")
                    )
                } else if let Some((pid, false)) = dataplane {
                    format!("broken: dataplane (pid {pid}) is not running; `grelab up` restarts it")
                } else {
                    "up".to_owned()
                };
                labs.push(serde_json::json!({
                    "lab": lab,
                    "status": health,
                    "source": s.source,
                    "namespaces": s.plan.nodes,
                    "dataplane_pid": s.dataplane.map(|id| id.pid),
                    "tunnels": s.backends.iter().map(|(ns, dev, b)| {
                        let mut t = serde_json::json!({"namespace": ns, "device": dev, "backend": b});
                        if let Some(on) = fast(ns, dev) {
                            t["fast_path"] = on.into();
                        }
                        t
                    }).collect::<Vec<_>>(),
                }));
            }
            Ok(None) => {}
            Err(e) => labs.push(serde_json::json!({"lab": lab, "status": format!("{e:#}")})),
        }
    }
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&labs)?);
        return Ok(());
    }
    if labs.is_empty() {
        println!("no lab is up");
    }
    for l in &labs {
        println!(
            "{}: {}",
            l["lab"].as_str().unwrap_or("?"),
            l["status"].as_str().unwrap_or("?")
        );
        if let Some(src) = l["source"].as_str() {
            println!("  from {src}");
        }
        for n in l["namespaces"].as_array().into_iter().flatten() {
            println!(
                "  node {} in namespace {}",
                n["node"].as_str().unwrap_or("?"),
                n["ns"].as_str().unwrap_or("?")
            );
        }
        for t in l["tunnels"].as_array().into_iter().flatten() {
            println!(
                "  tunnel {} on {}: {}{}",
                t["device"].as_str().unwrap_or("?"),
                t["namespace"].as_str().unwrap_or("?"),
                t["backend"].as_str().unwrap_or("?"),
                if t["fast_path"] == true {
                    " (eBPF fast path)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

/// The namespace of `node` in lab `lab` (default: the only lab up).
fn node_ns(lab: Option<String>, node: &str) -> Result<String> {
    let lab = the_lab(lab)?;
    let s = record(&lab)?;
    s.trust();
    s.plan.ns_of(node).map(str::to_owned).ok_or_else(|| {
        bad_input(format!(
            "lab `{lab}` has no node `{node}`; nodes: {}",
            s.plan
                .nodes
                .iter()
                .map(|n| n.node.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// `--force` as what an output file does with an existing file.
fn existing(force: bool) -> crate::cli::output::Existing {
    if force {
        crate::cli::output::Existing::Replace
    } else {
        crate::cli::output::Existing::Keep
    }
}

/// A number of seconds for `--timeout`: finite, 0 to a day.
fn seconds(s: &str) -> Result<f64, String> {
    let t: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.0..=86400.0).contains(&t) {
        return Err(format!("{s} is out of range: use 0 to 86400 seconds"));
    }
    Ok(t)
}

/// Shows packets on `iface` in namespace `ns`; each is written to `pcap` as
/// it arrives, unbuffered: a new file is whole at any moment, and a Ctrl-C
/// keeps what was captured (a replacement takes its name at the end).
fn capture(
    ns: &str,
    iface: &str,
    count: u32,
    timeout: f64,
    pcap: Option<crate::cli::output::Output>,
) -> Result<()> {
    let iface = iface.to_owned();
    crate::sys::netns::run_in(ns, move || {
        let mut cap = crate::capture::Capture::open(&iface)?;
        let mut pcap = pcap.map(crate::capture::PcapWriter::new).transpose()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(timeout);
        let mut seen = 0;
        // A failed read ends the capture; what was captured is still kept.
        let mut failed = None;
        while seen < count {
            let frame = match cap.next(deadline) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            seen += 1;
            let dir = if frame.outgoing { "out" } else { "in" };
            for (i, line) in crate::capture::describe(&frame.data).iter().enumerate() {
                if i == 0 {
                    println!("{dir:>3} {line}");
                } else {
                    println!("    {line}");
                }
            }
            if let Some(w) = pcap.as_mut() {
                w.write(&frame)?;
            }
        }
        if let Some(w) = pcap {
            w.into_inner().commit()?;
        }
        eprintln!(
            "{seen} packets captured on {node_iface}",
            node_iface = iface
        );
        failed.map_or(Ok(()), Err)
    })
}

/// Replaces grelab with `cmd` inside the namespace of `node`.
fn exec(lab: Option<String>, node: &str, cmd: &[String]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let ns = node_ns(lab, node)?;
    crate::sys::netns::enter(&crate::sys::netns::open(&ns)?)?;
    let err = std::process::Command::new(&cmd[0]).args(&cmd[1..]).exec();
    Err(error::environment(format!(
        "running `{}` in node `{node}`: {err}",
        cmd[0]
    )))
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
    fn the_error_prefix_follows_the_error_not_its_text() {
        let report = error::rendered("t.yaml:1:7: error: the lab has no nodes\n1 error in t.yaml");
        assert_eq!(
            error_text(&report),
            "t.yaml:1:7: error: the lab has no nodes\n1 error in t.yaml"
        );
        // A name the user chose may hold the words a report holds.
        let missing = bad_input("cannot read topology file `x: error: y.yaml`");
        assert_eq!(
            error_text(&missing),
            "grelab: error: cannot read topology file `x: error: y.yaml`"
        );
        let wrapped = error::rendered("f.yaml:2:1: error: bad").context("loading");
        assert_eq!(error_text(&wrapped), "loading: f.yaml:2:1: error: bad");
    }
}
