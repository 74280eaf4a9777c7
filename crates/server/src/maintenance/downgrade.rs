//! Maintenance `Downgrade` (etcd 3.6): Bramble has one storage format and no older
//! cluster version to go back to, so no target is a valid downgrade. Each action is
//! answered as etcd 3.6 answers it when the target is not valid (its
//! `downgradeValidate`, `downgradeEnable`, `downgradeCancel`): a target that does not
//! parse as a version gets `wrong downgrade target version format`, any other target
//! `invalid downgrade target version`, and a cancel `no inflight downgrade job`, since
//! no downgrade is ever enabled (Status' `downgrade_info` says so).

use bramble_api::etcdserverpb::downgrade_request::DowngradeAction;
use bramble_api::etcdserverpb::DowngradeRequest;
use tonic::Status;

use crate::errors;

/// etcd's refusal of `req`.
pub(super) fn refuse(req: &DowngradeRequest) -> Status {
    match DowngradeAction::try_from(req.action) {
        Ok(DowngradeAction::Validate | DowngradeAction::Enable) => {
            if is_version(&req.version) {
                errors::invalid_downgrade_target_version()
            } else {
                errors::wrong_downgrade_version_format()
            }
        }
        Ok(DowngradeAction::Cancel) => errors::no_inflight_downgrade(),
        // etcd's `ErrUnknownMethod`, which has no gRPC code of its own.
        Err(_) => errors::unknown_method(),
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
    fn every_action_is_refused_with_etcds_error() {
        let r = refuse(&req(DowngradeAction::Validate, "3.4"));
        assert_eq!(r.code(), tonic::Code::InvalidArgument);
        assert_eq!(r.message(), "etcdserver: invalid downgrade target version");
        let r = refuse(&req(DowngradeAction::Enable, "x"));
        assert_eq!(r.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            r.message(),
            "etcdserver: wrong downgrade target version format"
        );
        let r = refuse(&req(DowngradeAction::Cancel, ""));
        assert_eq!(r.code(), tonic::Code::FailedPrecondition);
        assert_eq!(r.message(), "etcdserver: no inflight downgrade job");
        let r = refuse(&DowngradeRequest {
            action: 7,
            version: String::new(),
        });
        assert_eq!(r.message(), "etcdserver: unknown method");
    }
}
