//! Neighbours: permanent entries (large labs skip ARP/ND, see
//! `plan::Step::Neighbor`).

use std::net::IpAddr;

use anyhow::{Context, Result};
use netlink_packet_route::neighbour::NeighbourState;

use super::{Rtnl, Target, explain_nl};

impl Rtnl {
    /// A permanent neighbour entry: `addr` is at `mac` on `name`.
    pub async fn add_neighbor(&self, name: &str, addr: IpAddr, mac: [u8; 6]) -> Result<()> {
        let doing = format!("adding neighbour {addr} at `{name}`");
        let index = self.link_index(name).await.with_context(|| doing.clone())?;
        self.handle
            .neighbours()
            .add(index, addr)
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| explain_nl(e, &doing, Some(Target::Link(name))))
    }

    /// Deletes the neighbour entry of `addr` on `name`; one that is gone, or
    /// whose device is gone, is fine.
    pub async fn del_neighbor(&self, name: &str, addr: IpAddr) -> Result<()> {
        let doing = format!("deleting neighbour {addr} at `{name}`");
        let Ok(index) = self.link_index(name).await else {
            return Ok(());
        };
        let msg = self
            .handle
            .neighbours()
            .add(index, addr)
            .message_mut()
            .clone();
        match self.handle.neighbours().del(msg).execute().await {
            Err(e) if super::errno(&e) == Some(libc::ENOENT) => Ok(()),
            r => r.map_err(|e| explain_nl(e, &doing, Some(Target::Link(name)))),
        }
    }
}
