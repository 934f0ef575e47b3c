//! The classic pcap file format (microsecond timestamps, Ethernet), which
//! tcpdump and Wireshark read.

use std::io;
use std::time::SystemTime;

use super::Frame;

/// Writes frames as a classic pcap file (microsecond timestamps, Ethernet).
pub struct PcapWriter<W: io::Write> {
    w: W,
}

impl<W: io::Write> PcapWriter<W> {
    const SNAPLEN: u32 = 65535;

    /// Writes the file header.
    pub fn new(mut w: W) -> io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes()); // thiszone: UTC
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&Self::SNAPLEN.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        w.write_all(&h)?;
        Ok(PcapWriter { w })
    }

    /// Appends one frame (cut to the 65535-byte snap length).
    pub fn write(&mut self, frame: &Frame) -> io::Result<()> {
        let since = frame
            .timestamp
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let kept = frame.data.len().min(Self::SNAPLEN as usize);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(since.as_secs() as u32).to_le_bytes());
        h[4..8].copy_from_slice(&since.subsec_micros().to_le_bytes());
        h[8..12].copy_from_slice(&(kept as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(frame.wire_len.max(kept) as u32).to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(&frame.data[..kept])
    }

    /// Gives the writer back (flush it if buffered).
    pub fn into_inner(self) -> W {
        self.w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::fixtures::frame;

    #[test]
    fn pcap_layout() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(&frame(vec![0xab; 3], 7)).unwrap();
        let bytes = w.into_inner();
        assert_eq!(&bytes[..8], &[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0]);
        assert_eq!(&bytes[16..24], &[0xff, 0xff, 0, 0, 1, 0, 0, 0]);
        assert_eq!(
            &bytes[24..40],
            &[7, 0, 0, 0, 0x90, 0xd0, 3, 0, 3, 0, 0, 0, 3, 0, 0, 0]
        );
        assert_eq!(&bytes[40..], &[0xab; 3]);
    }
}
