//! Setup and the process: forged packets, setup errors, sockets per
//! namespace, and a dataplane started, served and stopped as a process.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::fixture::*;
use crate::dataplane::control::launch;
use crate::dataplane::engine::Engine;
use crate::dataplane::{Spec, find, is_running, read_stats, run, serve, stats_path, stop};
use crate::model::TunnelKind;
use crate::sys::process::Identity;
use crate::wire::gre;

#[test]
fn forged_packets_are_dropped_and_counted() {
    let lab = Lab::new("spoof");
    // Only host a's end runs: host b forges everything a receives.
    let (mut a, _) = pair(&lab, "tun0", TunnelKind::Gre);
    (a.ikey, a.okey, a.checksum, a.sequence) = (Some(7), Some(7), true, true);
    let dp = Dp::start(&lab, vec![a]);
    let forger = Forger::new(&lab.b);
    let (peer, me) = (Ipv4Addr::new(152, 16, 10, 2), Ipv4Addr::new(172, 16, 10, 2));
    let send = |src: Ipv4Addr, gre: Vec<u8>| forger.send(src, me, &gre);
    // An inner IPv4 echo request 192.168.50.2 -> 192.168.50.1.
    let mut inner = vec![
        0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 192, 168, 50, 2, 192, 168, 50, 1, 8, 0, 0xf7,
        0xff, 0, 0, 0, 0,
    ];
    let sum = gre::internet_checksum(&inner[..20]);
    inner[10..12].copy_from_slice(&sum.to_be_bytes());
    let ip4 = gre::ETHERTYPE_IPV4;
    let good = |seq| gre_packet(ip4, true, Some(7), Some(seq), &inner);

    send(peer, good(100));
    send(Ipv4Addr::new(152, 16, 10, 99), good(101)); // unmatched
    send(peer, gre_packet(ip4, true, Some(8), Some(101), &inner)); // drop_key
    send(peer, gre_packet(ip4, true, None, Some(101), &inner)); // drop_key
    let mut bad_sum = good(101);
    bad_sum[4] ^= 0xff;
    send(peer, bad_sum); // drop_checksum
    send(peer, gre_packet(ip4, false, Some(7), Some(101), &inner)); // drop_checksum
    send(peer, good(50)); // drop_sequence
    send(peer, good(100)); // drop_sequence (replay)
    send(peer, gre_packet(ip4, true, Some(7), None, &inner)); // drop_sequence
    send(
        peer,
        gre_packet(gre::ETHERTYPE_TEB, true, Some(7), Some(101), &inner),
    ); // drop_protocol
    send(peer, gre_packet(0x0806, true, Some(7), Some(101), &inner)); // drop_protocol
    let mut v1 = good(101);
    v1[1] = 1;
    send(peer, v1); // malformed
    send(peer, vec![0x20, 0, 8, 0, 0]); // malformed: key flagged, cut short
    send(peer, good(101));

    let s = dp.wait_for("both genuine packets", |s| {
        s.tunnels[0].rx_packets >= 2 && s.malformed >= 2
    });
    std::thread::sleep(Duration::from_millis(300));
    let s2 = read_stats(&dp.stats).unwrap();
    assert_eq!(s, s2, "counters moved after the last forged packet");
    let t = &s.tunnels[0];
    assert_eq!(t.rx_packets, 2, "only the two genuine packets pass: {s:#?}");
    assert_eq!(t.rx_bytes, 2 * inner.len() as u64);
    assert_eq!((s.unmatched, s.malformed), (1, 2), "{s:#?}");
    assert_eq!(
        (
            t.drop_key,
            t.drop_checksum,
            t.drop_sequence,
            t.drop_protocol
        ),
        (2, 2, 3, 2),
        "{s:#?}"
    );
}

#[test]
fn a_setup_error_leaves_nothing_behind() {
    let lab = Lab::new("fail");
    let (a, _) = pair(&lab, "tun0", TunnelKind::Gre);
    let mut missing = a.clone();
    (missing.name, missing.netns) = ("tun1".into(), format!("{}-missing", lab.a));
    let spec = Spec {
        lab: "test".into(),
        tunnels: vec![a.clone(), missing],
    };
    let stop = AtomicBool::new(false);
    let mut ready = false;
    let err = run(&spec, &lab.dir.join("s.json"), || ready = true, &stop).unwrap_err();
    assert!(!ready);
    assert!(format!("{err:#}").contains("-missing"), "{err:#}");
    // A fork by a parallel test may hold a copy of the fd until it execs.
    let deadline = Instant::now() + Duration::from_secs(2);
    while ip(&lab.a, "-o link show").contains("tun0") {
        assert!(Instant::now() < deadline, "tun0 outlived the failed setup");
        std::thread::sleep(Duration::from_millis(20));
    }

    let spec = Spec {
        lab: "test".into(),
        tunnels: vec![a.clone(), a],
    };
    let err = run(&spec, &lab.dir.join("s.json"), || ready = true, &stop).unwrap_err();
    assert!(!ready);
    assert!(format!("{err:#}").contains("tun0"), "{err:#}");
}

#[test]
fn one_socket_per_namespace_and_family() {
    let lab = Lab::new("socks");
    let mut ends = vec![];
    for i in 0..10 {
        let (mut a, mut b) = pair(&lab, &format!("k{i}"), TunnelKind::Gre);
        (a.ikey, a.okey, b.ikey, b.okey) = (Some(i), Some(i), Some(i), Some(i));
        ends.extend([a, b]);
    }
    let (a, b) = pair(&lab, "g6", TunnelKind::Ip6gre);
    ends.extend([a, b]);
    let engine = Engine::new(
        &Spec {
            lab: "test".into(),
            tunnels: ends,
        },
        true,
    )
    .unwrap();
    assert_eq!(engine.tunnels.len(), 22);
    let v6: Vec<bool> = engine.socks.iter().map(|s| s.v6).collect();
    assert_eq!(
        v6,
        [false, false, true, true],
        "a, b over IPv4, then a, b over IPv6"
    );
}

#[test]
#[ignore = "entry point of the child process that start_serve_stop_as_a_process spawns"]
fn child_serve() {
    let spec = std::env::var_os("GRELAB_DP_SPEC").expect("GRELAB_DP_SPEC");
    let stats = std::env::var_os("GRELAB_DP_STATS").expect("GRELAB_DP_STATS");
    serve(Path::new(&spec), Path::new(&stats), Some(3)).unwrap();
}

/// `launch` with this test binary running `child_serve` in place of
/// `grelab dataplane`.
fn launch_test_child(lab: &Lab, spec: &Spec) -> Result<Identity> {
    let exe = std::env::current_exe().unwrap();
    launch(&lab.dir, spec, |spec_path, stats_path| {
        let mut cmd = Command::new(exe);
        cmd.args([
            "--exact",
            "dataplane::root_tests::setup::child_serve",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ]);
        cmd.env("GRELAB_DP_SPEC", spec_path)
            .env("GRELAB_DP_STATS", stats_path);
        cmd
    })
}

#[test]
fn start_serve_stop_as_a_process() {
    let lab = Lab::new("proc");
    let (a, b) = pair(&lab, "tun0", TunnelKind::Gre);
    let spec = Spec {
        lab: "test".into(),
        tunnels: vec![a.clone(), b],
    };
    let id = launch_test_child(&lab, &spec).unwrap();
    struct Kill(Identity);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = stop(&self.0);
        }
    }
    let _guard = Kill(id);
    let pid = id.pid;
    assert!(is_running(&id));
    assert_eq!(
        find(&lab.dir, None),
        [id],
        "found by the identity left beside the spec"
    );
    ip(&lab.a, "addr add 192.168.50.1/30 dev tun0");
    ip(&lab.b, "addr add 192.168.50.2/30 dev tun0");
    ping(&lab.a, "192.168.50.2", 3)
        .unwrap_or_else(|o| panic!("ping through the dataplane process failed:\n{o}"));
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("VmRSS: ?");
    eprintln!("dataplane process serving the basic lab (2 ends, in the test binary): {rss}");
    assert!(stop(&id).unwrap());
    assert!(!is_running(&id));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "stopped and reaped"
    );
    assert!(!stop(&id).unwrap(), "nothing left to stop");
    let s = read_stats(&stats_path(&lab.dir)).unwrap();
    // The first packet attaches the fast path, which carries the rest.
    let b = stat(&s, &lab.b, "tun0");
    assert!(
        b.rx_packets >= 1 && b.rx_packets + b.fast_rx_packets >= 3,
        "stats written at exit: {s:?}"
    );
    // Devices are persistent: they outlive the process (deleting the
    // lab's namespaces removes them in one batch).
    assert!(
        ip(&lab.a, "-o link show").contains("tun0"),
        "the persistent device must outlive the process"
    );
    ip(&lab.a, "link del tun0");

    let mut bad = a;
    bad.netns = format!("{}-missing", lab.a);
    let err = launch_test_child(
        &lab,
        &Spec {
            lab: "test".into(),
            tunnels: vec![bad],
        },
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("failed to start") && msg.contains("-missing"),
        "{msg}"
    );
    assert!(!is_running(&Identity {
        pid: u32::MAX / 2,
        ..id
    }));
}
