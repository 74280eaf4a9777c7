//! Maintenance `Downgrade` (etcd 3.6) over the wire: Bramble refuses every validate and
//! enable with etcd 3.6's errors (it has one storage format and nothing to downgrade to) and
//! answers a cancel as etcd 3.6.16 does, compared with etcd 3.6. The one difference: validating the minor version below (3.5), which etcd
//! accepts and Bramble refuses as it refuses any other target.

use std::time::Duration;

use bramble_api::etcdserverpb::downgrade_request::DowngradeAction;
use bramble_api::etcdserverpb::maintenance_client::MaintenanceClient;
use bramble_api::etcdserverpb::DowngradeRequest;
use bramble_tests::target::differential_targets;
use bramble_tests::{Kind, Server};

async fn downgrade(
    endpoint: &str,
    action: DowngradeAction,
    version: &str,
) -> Result<tonic::Response<bramble_api::etcdserverpb::DowngradeResponse>, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .expect("connect");
    let req = DowngradeRequest {
        action: action as i32,
        version: version.to_string(),
    };
    MaintenanceClient::new(channel).downgrade(req).await
}

/// What a downgrade request got: the refusal's code and message, or the version accepted.
fn answer(
    result: Result<tonic::Response<bramble_api::etcdserverpb::DowngradeResponse>, tonic::Status>,
) -> String {
    match result {
        Ok(r) => format!("accepted, version {:?}", r.into_inner().version),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    }
}

#[test]
fn downgrades_are_answered_as_etcd_36_answers_them() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let cases = [
        (DowngradeAction::Validate, "3.4"),
        (DowngradeAction::Enable, "3.4.0"),
        (DowngradeAction::Validate, "3.9"),
        (DowngradeAction::Enable, "three"),
        (DowngradeAction::Cancel, ""),
        (DowngradeAction::Validate, "3.5"),
    ];
    let answers = |kind: Kind| {
        let server = Server::start(kind);
        let endpoint = server.endpoint();
        cases
            .iter()
            .map(|(action, version)| {
                answer(runtime.block_on(downgrade(&endpoint, *action, version)))
            })
            .collect::<Vec<_>>()
    };
    let bramble = answers(Kind::Bramble);
    let want = [
        "InvalidArgument: etcdserver: invalid downgrade target version",
        "InvalidArgument: etcdserver: invalid downgrade target version",
        "InvalidArgument: etcdserver: invalid downgrade target version",
        "InvalidArgument: etcdserver: wrong downgrade target version format",
        // etcd 3.6.16 logs that none was in flight and answers with the cluster version.
        "accepted, version \"3.6\"",
        // etcd accepts the minor version below; Bramble has nothing to downgrade to.
        "InvalidArgument: etcdserver: invalid downgrade target version",
    ];
    assert_eq!(bramble, want, "bramble (left)");
    if differential_targets().contains(&Kind::Etcd) {
        let etcd = answers(Kind::Etcd);
        let last = cases.len() - 1;
        assert_eq!(
            bramble[..last],
            etcd[..last],
            "bramble (left) vs etcd 3.6 (right)"
        );
        assert_eq!(
            etcd[last], "accepted, version \"3.6\"",
            "etcd 3.6 validating 3.5"
        );
    }
}
