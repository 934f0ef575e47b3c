//! Root tests: a capture on both ends of a veth between two namespaces of
//! the test's own, while a raw socket sends GRE across.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use nix::sys::socket::{MsgFlags, setsockopt, sockopt};

use super::fixtures::*;
use super::{Capture, Frame, decode, describe};
use crate::sys::testns::TestNs;
use crate::wire::gre;

/// Namespaces a and b of this test joined by a veth (`va` in a, `vb` in
/// b), addressed 10.255.0.1/30 and .2/30 and up; on the way, capturing on
/// the interface while it is down must say so.
fn veth_lab() -> ([TestNs; 2], String, String) {
    let lab = TestNs::group("cap", ["a", "b"]);
    let [a, b] = &lab;
    let pid = std::process::id();
    let (va, vb) = (format!("glc{pid}a"), format!("glc{pid}b"));
    a.veth(&va, b, &vb);
    // Capturing on an interface that is down says so.
    let va2 = va.clone();
    let down = crate::sys::netns::run_in(&a.0, move || {
        Capture::open(&va2)?.next(Instant::now() + Duration::from_millis(500))
    });
    let err = format!("{:#}", down.expect_err("capturing on a down interface"));
    assert!(err.contains("is down"), "{err}");
    a.ip(&format!("addr add 10.255.0.1/30 dev {va}"));
    b.ip(&format!("addr add 10.255.0.2/30 dev {vb}"));
    for (ns, dev) in [(a, &va), (b, &vb)] {
        ns.ip(&format!("link set {dev} up"));
        ns.ip("link set lo up");
    }
    (lab, va, vb)
}

/// A quiet interface: next() gives None at the deadline, not before.
fn assert_quiet_interface_waits(ns: &str) {
    let quiet = crate::sys::netns::run_in(ns, || {
        let mut cap = Capture::open("lo")?;
        let start = Instant::now();
        let got = cap.next(start + Duration::from_millis(200))?;
        Ok((got, start.elapsed()))
    })
    .unwrap();
    assert_eq!(quiet.0, None);
    assert!(
        quiet.1 >= Duration::from_millis(200),
        "returned after {:?}",
        quiet.1
    );
}

#[test]
fn captures_gre_sent_between_namespaces() {
    let (lab, va, vb) = veth_lab();
    let [a, b] = &lab;
    assert_quiet_interface_waits(&a.0);

    let g = repr(gre::ETHERTYPE_IPV4, true, Some(0x0102_0304), Some(42));
    let wire = gre_packet(g, &inner_ping());
    let deadline = Instant::now() + Duration::from_secs(10);
    let find = move |cap: &mut Capture| -> Result<Frame> {
        while let Some(f) = cap.next(deadline)? {
            if decode(&f.data).is_some_and(|e| e.gre.key == Some(0x0102_0304)) {
                return Ok(f);
            }
        }
        anyhow::bail!("no GRE frame captured within 10 s")
    };

    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let b = b.0.clone();
    let receiver = std::thread::spawn(move || {
        crate::sys::netns::run_in(&b, move || {
            let mut cap = Capture::open(&vb)?;
            ready_tx.send(()).unwrap();
            find(&mut cap)
        })
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the receiving capture opened");
    let sent = crate::sys::netns::run_in(&a.0, move || {
        let mut cap = Capture::open(&va)?;
        send_gre(&wire)?;
        find(&mut cap)
    })
    .unwrap();
    let received = receiver.join().unwrap().unwrap();

    assert!(sent.outgoing && !received.outgoing);
    let age = SystemTime::now().duration_since(sent.timestamp).unwrap();
    assert!(age < Duration::from_secs(30), "timestamp {age:?} old");
    for f in [&sent, &received] {
        let e = decode(&f.data).unwrap();
        assert_eq!(e.outer_src, IpAddr::from([10, 255, 0, 1]));
        assert_eq!(e.outer_dst, IpAddr::from([10, 255, 0, 2]));
        assert_eq!(
            (e.ttl, e.tos, e.df, e.outer_len),
            (77, 0x20, true, 20 + 16 + 84)
        );
        assert_eq!(e.gre, g);
        assert!(e.checksum_ok);
        assert_eq!(e.inner, seed_inner());
        let text = describe(&f.data);
        assert!(
            text[1].contains("GREv0, Flags [checksum present, key present, sequence# present]"),
            "{text:?}"
        );
    }
    assert_eq!(
        decode(&sent.data).unwrap().ip_id,
        decode(&received.data).unwrap().ip_id
    );
    drop(lab);
}

/// Sends `gre` to 10.255.0.2 from a raw protocol-47 socket: TTL 77, TOS 0x20, DF.
fn send_gre(gre: &[u8]) -> Result<()> {
    use nix::sys::socket::{SockaddrIn, sendto};
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 47) };
    anyhow::ensure!(raw >= 0, "raw GRE socket: {}", io::Error::last_os_error());
    // SAFETY: `raw` is a fresh, valid descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    setsockopt(&fd, sockopt::Ipv4Ttl, &77)?;
    setsockopt(&fd, sockopt::Ipv4Tos, &0x20)?;
    let dont_fragment: libc::c_int = libc::IP_PMTUDISC_DO;
    // SAFETY: the pointer and length describe a c_int that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            raw,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&raw const dont_fragment).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    anyhow::ensure!(rc == 0, "IP_MTU_DISCOVER: {}", io::Error::last_os_error());
    sendto(
        fd.as_raw_fd(),
        gre,
        &SockaddrIn::new(10, 255, 0, 2, 0),
        MsgFlags::empty(),
    )?;
    Ok(())
}
