//! Maintenance `Downgrade` (etcd 3.6) over the wire: Bramble refuses every action with
//! etcd 3.6's errors (it has one storage format and nothing to downgrade to). etcd 3.4
//! has no Downgrade RPC and answers Unimplemented; the run on etcd checks that.

use std::time::Duration;

use bramble_api::etcdserverpb::downgrade_request::DowngradeAction;
use bramble_api::etcdserverpb::maintenance_client::MaintenanceClient;
use bramble_api::etcdserverpb::DowngradeRequest;
use bramble_tests::target::differential_targets;
use bramble_tests::{Kind, Server};

async fn downgrade(endpoint: &str, action: DowngradeAction, version: &str) -> tonic::Status {
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
    match MaintenanceClient::new(channel).downgrade(req).await {
        Ok(r) => panic!("downgrade {action:?} {version}: accepted: {r:?}"),
        Err(s) => s,
    }
}

#[test]
fn every_downgrade_is_refused_as_etcd_36_refuses_it() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for kind in differential_targets() {
        let server = Server::start(kind);
        let endpoint = server.endpoint();
        let cases = [
            (
                DowngradeAction::Validate,
                "3.4",
                tonic::Code::InvalidArgument,
                "etcdserver: invalid downgrade target version",
            ),
            (
                DowngradeAction::Enable,
                "3.4.0",
                tonic::Code::InvalidArgument,
                "etcdserver: invalid downgrade target version",
            ),
            (
                DowngradeAction::Validate,
                "3.9",
                tonic::Code::InvalidArgument,
                "etcdserver: invalid downgrade target version",
            ),
            (
                DowngradeAction::Enable,
                "three",
                tonic::Code::InvalidArgument,
                "etcdserver: wrong downgrade target version format",
            ),
            (
                DowngradeAction::Cancel,
                "",
                tonic::Code::FailedPrecondition,
                "etcdserver: no inflight downgrade job",
            ),
        ];
        for (action, version, code, message) in cases {
            let status = runtime.block_on(downgrade(&endpoint, action, version));
            match kind {
                Kind::Etcd => assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}"),
                Kind::Bramble => {
                    assert_eq!(
                        (status.code(), status.message()),
                        (code, message),
                        "{action:?} {version}"
                    );
                }
            }
        }
    }
}
