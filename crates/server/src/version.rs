//! The one etcd version Bramble reports, and what follows from it: Status'
//! `version`, `bramble --version`, the `/version` HTTP endpoint and the
//! version in snapshots all read [`ETCD_VERSION`], so they cannot disagree.

/// The etcd version Bramble reports. Kubernetes turns watch progress requests
/// off below 3.5.13, so this must stay at or above it.
pub const ETCD_VERSION: &str = "3.6.16";

/// `major.minor` of a version string such as `3.5.17` (0 for a part that
/// does not parse: only our own constant is ever passed).
fn major_minor(version: &str) -> (u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// etcd's cluster version for a single-version cluster: `major.minor.0`.
/// (etcd's cluster version is the lowest `major.minor` of its members; every
/// Bramble member reports the same.)
pub(crate) fn cluster_version() -> String {
    let (major, minor) = major_minor(ETCD_VERSION);
    format!("{major}.{minor}.0")
}

/// The cluster version as etcd's `version.Cluster` writes it: `major.minor` (what a
/// downgrade answer reports).
pub(crate) fn cluster_major_minor() -> String {
    let (major, minor) = major_minor(ETCD_VERSION);
    format!("{major}.{minor}")
}

/// The storage version etcd 3.6 reports (in snapshots, Status'
/// `storage_version` and `/version`): `major.minor.0` as well.
pub(crate) fn storage_version() -> String {
    cluster_version()
}

/// The body of `GET /version`: etcd's `version.Versions` as JSON, in the
/// shape of the reported version (etcd 3.6 added `storage`).
pub(crate) fn versions_json() -> String {
    versions_json_of(ETCD_VERSION)
}

fn versions_json_of(server: &str) -> String {
    let (major, minor) = major_minor(server);
    let cluster = format!("{major}.{minor}.0");
    if (major, minor) >= (3, 6) {
        format!("{{\"etcdserver\":\"{server}\",\"etcdcluster\":\"{cluster}\",\"storage\":\"{cluster}\"}}")
    } else {
        format!("{{\"etcdserver\":\"{server}\",\"etcdcluster\":\"{cluster}\"}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_json_follows_the_reported_version() {
        // etcd 3.4 and 3.5 answer with two fields, 3.6 adds storage.
        assert_eq!(
            versions_json_of("3.5.17"),
            r#"{"etcdserver":"3.5.17","etcdcluster":"3.5.0"}"#
        );
        assert_eq!(
            versions_json_of("3.6.5"),
            r#"{"etcdserver":"3.6.5","etcdcluster":"3.6.0","storage":"3.6.0"}"#
        );
        assert!(versions_json().contains(ETCD_VERSION));
        assert_eq!(storage_version(), cluster_version());
    }
}
