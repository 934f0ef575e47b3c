//! The capture decoders on any Ethernet frame: neither `describe` nor
//! `decode` panics, the text stays bounded, the two agree on a GRE packet,
//! and the pcap writer writes one record of the right size.
#![no_main]

use std::time::{Duration, SystemTime};

use grelab::capture::{Frame, PcapWriter, decode, describe};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lines = describe(data);
    let text = lines.join("\n");
    assert!(!text.is_empty(), "no text for {} bytes", data.len());
    // Nesting is capped, so the text is too, whatever the frame.
    assert!(text.len() < 16 << 10, "{} bytes of text", text.len());

    if let Some(e) = decode(data) {
        let head = format!("{} > {}: GREv0, Flags [", e.outer_src, e.outer_dst);
        assert!(
            text.contains(&head),
            "decode saw GRE, describe did not:\n{text}"
        );
        if let Some(key) = e.gre.key {
            assert!(text.contains(&format!(", key=0x{key:x}")), "{text}");
        }
        if let Some(seq) = e.gre.sequence {
            assert!(text.contains(&format!(", seq {seq}")), "{text}");
        }
        assert!(e.checksum_ok || e.gre.checksum);
    }

    let frame = Frame {
        data: data.to_vec(),
        wire_len: data.len(),
        timestamp: SystemTime::UNIX_EPOCH + Duration::from_micros(1_500_000),
        outgoing: false,
    };
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    w.write(&frame).unwrap();
    let file = w.into_inner();
    assert_eq!(file.len(), 24 + 16 + data.len().min(65535));
    assert_eq!(file[40..], data[..data.len().min(65535)]);
});
