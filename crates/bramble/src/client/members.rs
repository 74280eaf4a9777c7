//! Cluster membership through the API: list, add (as a voter or a learner),
//! promote, update and remove members, as etcd's Cluster service does.

use bramble_api::etcdserverpb::cluster_server::Cluster;
use bramble_api::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};

use super::Client;
use crate::error::Error;

impl Client {
    /// Every member of the cluster, linearizable (etcd's MemberList).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), bramble::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = bramble::Node::open(bramble::NodeOptions::new(dir.path())).await?;
    /// let members = node.member_list().await?.members;
    /// assert_eq!(members.len(), 1);
    /// assert_eq!(members[0].name, "default");
    /// # node.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn member_list(&self) -> Result<MemberListResponse, Error> {
        let req = MemberListRequest { linearizable: true };
        self.call(self.inner.cluster.member_list(tonic::Request::new(req)))
            .await
    }

    /// Adds a member that will serve at `peer_urls` (start it with
    /// [`ClusterState::Existing`](crate::ClusterState::Existing) afterwards);
    /// a learner receives the log without voting until promoted.
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<MemberAddResponse, Error> {
        let req = MemberAddRequest {
            peer_ur_ls: peer_urls,
            is_learner,
        };
        self.call(self.inner.cluster.member_add(tonic::Request::new(req)))
            .await
    }

    /// Makes learner `id` a voting member, once it has caught up.
    pub async fn member_promote(&self, id: u64) -> Result<MemberPromoteResponse, Error> {
        let req = MemberPromoteRequest { id };
        self.call(self.inner.cluster.member_promote(tonic::Request::new(req)))
            .await
    }

    /// Changes member `id`'s peer URLs.
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<MemberUpdateResponse, Error> {
        let req = MemberUpdateRequest {
            id,
            peer_ur_ls: peer_urls,
        };
        self.call(self.inner.cluster.member_update(tonic::Request::new(req)))
            .await
    }

    /// Removes member `id` from the cluster.
    pub async fn member_remove(&self, id: u64) -> Result<MemberRemoveResponse, Error> {
        let req = MemberRemoveRequest { id };
        self.call(self.inner.cluster.member_remove(tonic::Request::new(req)))
            .await
    }
}
