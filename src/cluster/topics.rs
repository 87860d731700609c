//! A cluster's topics in etcd: `topics/{name}` holds the manifest (as in
//! the bucket), created once ("create if absent"), changed and deleted
//! only by a transaction on the revision the caller read, so two changes
//! never both apply to what neither saw. `incarnations` hands out topic
//! incarnations, so a name created again never reuses one.

use super::registry::Registry;
use super::{Compare, CoordError, CoordResult, KeyValue, Op, Watch};
use std::collections::BTreeMap;

impl Registry {
    /// Creates topic `name` with `manifest` once in the cluster: false if
    /// it exists already.
    pub fn create_topic(&self, name: &str, manifest: &[u8]) -> CoordResult<bool> {
        let key = self.key("topics", name);
        let put = Op::Put {
            key: key.clone(),
            value: manifest.to_vec(),
            lease: 0,
        };
        let out = self
            .coord()
            .txn(&[Compare::CreateRevision(key, 0)], &[put], &[])?;
        Ok(out.succeeded)
    }

    /// Every topic's manifest, by name.
    pub fn topics(&self) -> CoordResult<BTreeMap<String, Vec<u8>>> {
        let prefix = self.key("topics", "");
        let (kvs, _) = self.coord().list(&prefix)?;
        Ok(kvs
            .into_iter()
            .filter_map(|kv| {
                let name = std::str::from_utf8(&kv.key[prefix.len()..]).ok()?;
                Some((name.to_string(), kv.value))
            })
            .collect())
    }

    /// Changes of the topics.
    pub fn watch_topics(&self) -> CoordResult<Watch> {
        self.coord().watch(&self.key("topics", ""))
    }

    /// The topic's key as etcd has it (its manifest and revisions).
    pub fn topic(&self, name: &str) -> CoordResult<Option<KeyValue>> {
        self.coord().get(&self.key("topics", name))
    }

    /// Replaces the manifest of `name`, if its key is still at
    /// `mod_revision`.
    pub fn alter_topic(&self, name: &str, mod_revision: i64, manifest: &[u8]) -> CoordResult<bool> {
        let key = self.key("topics", name);
        let put = Op::Put {
            key: key.clone(),
            value: manifest.to_vec(),
            lease: 0,
        };
        let when = [Compare::ModRevision(key, mod_revision)];
        Ok(self.coord().txn(&when, &[put], &[])?.succeeded)
    }

    /// Deletes topic `name`, if its key is still at `mod_revision`, with
    /// its partitions' leader keys (which fences their leaders' commits)
    /// and commit points, in one transaction.
    pub fn delete_topic(&self, name: &str, mod_revision: i64) -> CoordResult<bool> {
        let key = self.key("topics", name);
        let ops = [
            Op::Delete(key.clone()),
            // Topic names have no '/': the prefix is this topic's only.
            Op::DeletePrefix(self.key("leaders", &format!("{name}/"))),
            Op::DeletePrefix(self.key("commits", &format!("{name}/"))),
        ];
        let when = [Compare::ModRevision(key, mod_revision)];
        Ok(self.coord().txn(&when, &ops, &[])?.succeeded)
    }

    /// A topic incarnation no topic of this cluster had: above every one
    /// handed out before, and at least `floor` (the bucket's, so a
    /// cluster whose etcd was emptied still never reuses one).
    pub fn claim_incarnation(&self, floor: i64) -> CoordResult<i64> {
        self.advance_counter("incarnations", "next", |next| {
            let claimed = next.max(floor);
            let after = claimed
                .checked_add(1)
                .ok_or_else(|| CoordError::Refused("every incarnation was handed out".into()))?;
            Ok((claimed, after))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::registry::PartitionId;
    use crate::cluster::MemoryCoordination;
    use std::sync::Arc;

    #[test]
    fn a_topic_changes_and_goes_only_at_the_revision_read_and_takes_its_keys_along() {
        let r = Registry::new(Arc::new(MemoryCoordination::new()), "c");
        assert!(r.create_topic("t", b"v1").unwrap());
        assert!(r.create_topic("t2", b"other").unwrap());
        assert!(!r.create_topic("t", b"again").unwrap());
        let read = r.topic("t").unwrap().unwrap();
        assert!(r.alter_topic("t", read.mod_revision, b"v2").unwrap());
        // A change made from the first read is refused: it did not see v2.
        assert!(!r.alter_topic("t", read.mod_revision, b"v3").unwrap());
        assert!(!r.delete_topic("t", read.mod_revision).unwrap());
        let lease = r
            .coordination()
            .grant(std::time::Duration::from_secs(10))
            .unwrap()
            .0;
        for topic in ["t", "t2"] {
            let p = PartitionId {
                topic: topic.into(),
                partition: 0,
            };
            r.claim(&p, "n1", lease).unwrap();
        }
        let now = r.topic("t").unwrap().unwrap();
        assert!(r.delete_topic("t", now.mod_revision).unwrap());
        assert!(r.topic("t").unwrap().is_none());
        let led: Vec<String> = r
            .leaders()
            .unwrap()
            .keys()
            .map(|p| p.topic.clone())
            .collect();
        assert_eq!(led, ["t2"], "t's leader key went, t2's stayed");
        assert_eq!(r.topics().unwrap().keys().collect::<Vec<_>>(), ["t2"]);
        // The name is free again.
        assert!(r.create_topic("t", b"new").unwrap());
    }

    #[test]
    fn incarnations_are_never_handed_out_twice_and_respect_the_floor() {
        let r = Registry::new(Arc::new(MemoryCoordination::new()), "c");
        assert_eq!(r.claim_incarnation(0).unwrap(), 1);
        assert_eq!(r.claim_incarnation(0).unwrap(), 2);
        assert_eq!(r.claim_incarnation(10).unwrap(), 10);
        assert_eq!(r.claim_incarnation(3).unwrap(), 11);
    }
}
