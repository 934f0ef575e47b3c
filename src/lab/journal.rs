//! The namespace journal: the proof of which namespaces a lab created.
//!
//! A mark (the alias on `lo`) can be forged or erased by anything with
//! CAP_NET_ADMIN in a namespace. The journal, in the lab's root-owned state
//! directory, cannot: `up` appends the new namespace's identity (its nsfs
//! device and inode) before giving it a name, then the identity of the
//! placeholder file it mounts it on. So after a crash at any point the
//! journal names everything that may be left: `down` removes exactly the
//! namespaces whose identity matches, and the placeholders it made, and
//! never a namespace of the same name that is someone else's.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

use crate::lab::state::LabDir;
use crate::sys::netns::{Created, NsId};

const FILE: &str = "journal";

/// One line of the journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Line {
    Namespace { name: String, id: NsId },
    Existed { name: String },
    Placeholder { name: String, id: NsId },
}

/// What the journal says of one namespace name (over several `up`s, if an
/// earlier one's leftovers could not all be removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owned {
    /// The identities of the namespaces made for this name.
    pub namespaces: Vec<NsId>,
    /// The identities of the placeholder files made for it.
    pub placeholders: Vec<NsId>,
}

impl Owned {
    /// Whether `id`, found mounted at the name, is a namespace of ours.
    pub fn has_namespace(&self, id: NsId) -> bool {
        self.namespaces.contains(&id)
    }

    /// Whether an empty file `id` at the name is a placeholder of ours: one
    /// recorded, or the one a crash kept from being recorded (a namespace
    /// was made for the name after the last placeholder).
    pub fn has_placeholder(&self, id: NsId) -> bool {
        self.placeholders.contains(&id) || self.placeholders.len() < self.namespaces.len()
    }
}

/// Appends to a lab's journal, from several threads.
pub struct Writer(Mutex<File>);

impl Writer {
    /// Opens lab `dir`'s journal for appending.
    pub fn open(dir: &LabDir) -> Result<Writer> {
        Ok(Writer(Mutex::new(dir.append(FILE)?)))
    }

    /// Records one step of creating namespace `name`.
    pub fn record(&self, name: &str, step: Created) -> Result<()> {
        let name = name.to_owned();
        let line = match step {
            Created::Namespace(id) => Line::Namespace { name, id },
            Created::Existed => Line::Existed { name },
            Created::Placeholder(id) => Line::Placeholder { name, id },
        };
        let mut text = serde_json::to_vec(&line)?;
        text.push(b'\n');
        let mut f = self
            .0
            .lock()
            .map_err(|_| anyhow!("the journal lock is poisoned"))?;
        // One write per line: lines of several threads never interleave.
        f.write_all(&text).context("writing the lab's journal")
    }
}

/// What lab `dir`'s journal says, by namespace name (empty without one).
/// A torn last line (a crash mid-write) is skipped: the step it would have
/// recorded had not happened yet.
pub fn read(dir: &LabDir) -> Result<BTreeMap<String, Owned>> {
    let mut out: BTreeMap<String, Owned> = BTreeMap::new();
    let Some(bytes) = dir.read(FILE)? else {
        return Ok(out);
    };
    for line in bytes.split(|&b| b == b'\n') {
        let Ok(line) = serde_json::from_slice::<Line>(line) else {
            continue;
        };
        match line {
            Line::Namespace { name, id } => out.entry(name).or_default().namespaces.push(id),
            // The namespace just made never got the name: it is not there.
            Line::Existed { name } => {
                if let Some(o) = out.get_mut(&name) {
                    o.namespaces.pop();
                }
            }
            Line::Placeholder { name, id } => out.entry(name).or_default().placeholders.push(id),
        }
    }
    Ok(out)
}
