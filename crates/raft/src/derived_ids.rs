//! Member and cluster ids, derived exactly as etcd derives them, so a
//! Bramble member started with etcd's flags has the ids etcd would give it.
//!
//! etcd: a member id is the first 8 bytes (big endian) of
//! sha1(sorted peer URLs joined + cluster token); the cluster id is the first
//! 8 bytes of sha1(the sorted member ids, 8 bytes big endian each).

use sha1::{Digest, Sha1};

fn first_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(b)
}

/// etcd's `computeMemberId` for a member of a new cluster.
pub fn member_id(peer_urls: &[String], cluster_token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut h = Sha1::new();
    h.update(urls.concat().as_bytes());
    h.update(cluster_token.as_bytes());
    first_u64(&h.finalize())
}

/// etcd's `RaftCluster.genID`.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    first_u64(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A default `etcd` (name "default", peer http://localhost:2380, token
    /// "etcd-cluster") reports these ids; every etcd user has seen them.
    #[test]
    fn matches_etcd_defaults() {
        let m = member_id(&["http://localhost:2380".to_string()], "etcd-cluster");
        assert_eq!(format!("{m:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[m])), "cdf818194e3a8c32");
    }

    #[test]
    fn peer_url_order_does_not_matter() {
        let a = member_id(&["http://b:2380".into(), "http://a:2380".into()], "t");
        let b = member_id(&["http://a:2380".into(), "http://b:2380".into()], "t");
        assert_eq!(a, b);
    }
}
