//! Maintenance `Downgrade` (etcd 3.6): Bramble has one storage format and no older
//! cluster version to go back to, so no target is a valid downgrade. Each action is
//! answered as etcd 3.6 answers it when the target is not valid (its
//! `downgradeValidate`, `downgradeEnable`, `downgradeCancel`): a target that does not
//! parse as a version gets `wrong downgrade target version format`, any other target
//! `invalid downgrade target version`. A cancel succeeds with the cluster version
//! (`3.6`): etcd 3.6.16 only logs that no downgrade was in flight and answers so, and no
//! downgrade is ever enabled here (Status' `downgrade_info` says so).

use bramble_api::etcdserverpb::downgrade_request::DowngradeAction;
use bramble_api::etcdserverpb::{DowngradeRequest, DowngradeResponse};
use tonic::Status;

use crate::{errors, version};

/// etcd 3.6's answer to `req`: the version a cancel reports (the cluster version's
/// `major.minor`, header to be filled by the caller), or the refusal.
pub(super) fn answer(req: &DowngradeRequest) -> Result<DowngradeResponse, Status> {
    match DowngradeAction::try_from(req.action) {
        Ok(DowngradeAction::Validate | DowngradeAction::Enable) => {
            if is_version(&req.version) {
                Err(errors::invalid_downgrade_target_version())
            } else {
                Err(errors::wrong_downgrade_version_format())
            }
        }
        Ok(DowngradeAction::Cancel) => Ok(DowngradeResponse {
            version: version::cluster_major_minor(),
            ..Default::default()
        }),
        // etcd's `ErrUnknownMethod`, which has no gRPC code of its own.
        Err(_) => Err(errors::unknown_method()),
    }
}

/// Whether `v` parses as etcd's `convertToClusterVersion` accepts it: a semantic
/// version (`3.5.0`, `3.5.0-rc.1`, `3.5.0+build`), or `major.minor`.
fn is_version(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let pre_and_build_ok = v[core.len()..]
        .trim_start_matches(['-', '+'])
        .split(['.', '+', '-'])
        .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()))
        || v.len() == core.len();
    let numbers: Vec<&str> = core.split('.').collect();
    let numeric = |n: &&str| {
        !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && (n.len() == 1 || !n.starts_with('0'))
    };
    match numbers.len() {
        // `major.minor` only as the whole input (etcd appends ".0" and parses again).
        2 => v.len() == core.len() && numbers.iter().all(numeric),
        3 => numbers.iter().all(numeric) && pre_and_build_ok,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(action: DowngradeAction, version: &str) -> DowngradeRequest {
        DowngradeRequest {
            action: action as i32,
            version: version.to_string(),
        }
    }

    #[test]
    fn versions_as_etcd_parses_them() {
        for ok in [
            "3.4",
            "3.5.0",
            "3.4.1",
            "10.20.30",
            "3.5.0-rc.1",
            "3.5.0+meta",
        ] {
            assert!(is_version(ok), "{ok}");
        }
        for bad in [
            "", "3", "v3.5", "3.5.0.1", "a.b", "3.", "03.5.0", "3.5-rc", "3.5.0-",
        ] {
            assert!(!is_version(bad), "{bad}");
        }
    }

    #[test]
    fn every_action_is_answered_as_etcd() {
        let refuse = |r: &DowngradeRequest| answer(r).expect_err("refused");
        let r = refuse(&req(DowngradeAction::Validate, "3.4"));
        assert_eq!(r.code(), tonic::Code::InvalidArgument);
        assert_eq!(r.message(), "etcdserver: invalid downgrade target version");
        let r = refuse(&req(DowngradeAction::Enable, "x"));
        assert_eq!(r.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            r.message(),
            "etcdserver: wrong downgrade target version format"
        );
        let r = answer(&req(DowngradeAction::Cancel, "")).expect("cancel answers");
        assert_eq!(r.version, "3.6");
        let r = refuse(&DowngradeRequest {
            action: 7,
            version: String::new(),
        });
        assert_eq!(r.message(), "etcdserver: unknown method");
    }
}
