//! The simulated cluster's actors: kubelets renewing their node Leases and writing node
//! status, pod churn with the binding and status updates and events that come with it,
//! and the event lease manager, all through [`super::store`]'s apiserver-shaped calls.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bramble_api::etcdserverpb::lease_client::LeaseClient;
use bramble_api::etcdserverpb::{LeaseGrantRequest, RangeRequest};
use tokio::time::Instant;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Status;

use super::ops::{OpKind, Recorder};
use super::store::{self, Written};
use super::watch::{prefix_of, Deliveries};
use super::Shape;
use crate::conn::{Kv, Token};

/// A lease stub whose requests carry the run's token.
pub(crate) type Leases = LeaseClient<InterceptedService<Channel, Token>>;

/// A node's Lease object key.
pub(crate) fn lease_key(node: u64) -> Vec<u8> {
    format!("/registry/leases/kube-node-lease/node-{node}").into_bytes()
}

/// A node object's key (apiserver still calls nodes "minions" in etcd).
pub(crate) fn node_key(node: u64) -> Vec<u8> {
    format!("/registry/minions/node-{node}").into_bytes()
}

/// A pod in the cluster and its mod revision as apiserver's watch cache last saw it.
#[derive(Clone, Debug)]
struct Pod {
    /// `/registry/pods/<ns>/<name>`.
    key: Vec<u8>,
    /// Its namespace, for its events.
    ns: u64,
    /// Its name, for its events.
    name: String,
    /// Its mod revision.
    rev: i64,
}

/// apiserver's `leaseManager` (storage/etcd3/lease_manager.go): objects created with a
/// TTL share a lease granted for `ttl + reuse` seconds, reused while it outlives the new
/// object's TTL by at most `reuse` and has fewer than 1000 objects attached.
#[derive(Debug)]
struct LeaseManager {
    /// The lease objects get, its expiry, and how many objects it has.
    prev: Option<(i64, Instant)>,
    /// Objects attached to `prev`.
    attached: u64,
}

/// apiserver's `defaultLeaseMaxObjectCount`.
const LEASE_MAX_OBJECTS: u64 = 1000;

/// The cluster's state and the clients it sends on.
pub(crate) struct Cluster {
    /// The workload's parameters.
    pub(crate) shape: Shape,
    /// KV stubs, used round-robin.
    kvs: Vec<Kv>,
    /// Which stub goes next.
    next_kv: AtomicUsize,
    /// For the event leases.
    leases: Leases,
    /// The event lease manager (held across its Grant, as apiserver's mutex is).
    lease_manager: tokio::sync::Mutex<LeaseManager>,
    /// Per-operation numbers.
    pub(crate) recorder: Arc<Recorder>,
    /// Writes to match with watch events.
    pub(crate) deliveries: Arc<Deliveries>,
    /// The pods that exist, in no order.
    pods: Mutex<Vec<Pod>>,
    /// Pod names are `pod-<tag>-<n>`: `tag` keeps a second run on the same store
    /// from colliding with the first one's pods.
    tag: String,
    /// The next pod number.
    next_pod: AtomicU64,
    /// The next event number.
    next_event: AtomicU64,
    /// Pods created and deleted during the run, events created, leases granted.
    pub(crate) counts: Counts,
}

/// What the run did, counted as it happened.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Pods created during the run (after setup).
    pub(crate) pods_created: AtomicU64,
    /// Pods deleted during the run.
    pub(crate) pods_deleted: AtomicU64,
    /// Events created.
    pub(crate) events: AtomicU64,
    /// Leases granted for events.
    pub(crate) leases_granted: AtomicU64,
}

impl Cluster {
    /// A cluster with no nodes or pods yet.
    pub(crate) fn new(
        shape: Shape,
        kvs: Vec<Kv>,
        leases: Leases,
        recorder: Arc<Recorder>,
    ) -> Cluster {
        let tag = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        );
        Cluster {
            shape,
            kvs,
            next_kv: AtomicUsize::new(0),
            leases,
            lease_manager: tokio::sync::Mutex::new(LeaseManager {
                prev: None,
                attached: 0,
            }),
            recorder,
            deliveries: Arc::new(Deliveries::default()),
            pods: Mutex::new(Vec::new()),
            tag,
            next_pod: AtomicU64::new(0),
            next_event: AtomicU64::new(0),
            counts: Counts::default(),
        }
    }

    /// The next KV stub, round-robin over the connections.
    pub(crate) fn kv(&self) -> Kv {
        let i = self.next_kv.fetch_add(1, Ordering::Relaxed);
        self.kvs[i % self.kvs.len()].clone()
    }

    /// Pods that exist now.
    pub(crate) fn pod_count(&self) -> usize {
        self.pods.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Runs one conditional write as `kind`, timed and recorded; an acknowledged write
    /// is handed to the watch bookkeeping. `None` on an error (recorded).
    async fn write(
        &self,
        kind: OpKind,
        key: &[u8],
        call: impl Future<Output = Result<Written, Status>>,
    ) -> Option<Written> {
        let t0 = Instant::now();
        match tokio::time::timeout(self.shape.request_timeout, call).await {
            Err(_) => {
                let status = Status::deadline_exceeded("bramble-bench: --request-timeout passed");
                self.recorder.error(kind, &status);
                None
            }
            Ok(Err(status)) => {
                self.recorder.error(kind, &status);
                None
            }
            Ok(Ok(Written::At(rev))) => {
                self.recorder.ok(kind, t0);
                if let Some(prefix) = prefix_of(key) {
                    self.deliveries.acked(prefix, rev, &self.recorder);
                }
                Some(Written::At(rev))
            }
            Ok(Ok(conflict)) => {
                self.recorder.conflict(kind, t0);
                Some(conflict)
            }
        }
    }

    /// Creates `key` for setup (not recorded): its mod revision. A key a previous run
    /// left is adopted with its current revision, as a restarted kubelet does.
    async fn setup_create(&self, key: &[u8], size: usize) -> Result<i64, Status> {
        let mut kv = self.kv();
        let value = blob(size, key);
        let call = store::create(&mut kv, key, value, 0);
        match tokio::time::timeout(self.shape.request_timeout, call).await {
            Err(_) => Err(Status::deadline_exceeded("setup: --request-timeout passed")),
            Ok(Err(status)) => Err(status),
            Ok(Ok(Written::At(rev))) => Ok(rev),
            Ok(Ok(Written::Conflict(_))) => {
                let request = RangeRequest {
                    key: key.to_vec(),
                    ..Default::default()
                };
                let reply = kv.range(request).await?.into_inner();
                Ok(reply.kvs.first().map_or(0, |kv| kv.mod_revision))
            }
        }
    }

    /// Creates node `node`'s Lease and Node objects; their mod revisions.
    pub(crate) async fn setup_node(&self, node: u64) -> Result<(i64, i64), Status> {
        let lease = self
            .setup_create(&lease_key(node), self.shape.lease_size)
            .await?;
        let status = self
            .setup_create(&node_key(node), self.shape.node_size)
            .await?;
        Ok((lease, status))
    }

    /// Creates one of the pods that exist before the run.
    pub(crate) async fn setup_pod(&self) -> Result<(), Status> {
        let pod = self.new_pod();
        let rev = self.setup_create(&pod.key, self.shape.pod_size).await?;
        self.add_pod(Pod { rev, ..pod });
        Ok(())
    }

    /// A new pod's name, namespace and key (not created yet).
    fn new_pod(&self) -> Pod {
        let n = self.next_pod.fetch_add(1, Ordering::Relaxed);
        let ns = n % self.shape.namespaces;
        let name = format!("pod-{}-{n}", self.tag);
        Pod {
            key: format!("/registry/pods/ns-{ns}/{name}").into_bytes(),
            ns,
            name,
            rev: 0,
        }
    }

    /// Adds a created pod to the set churn deletes from.
    fn add_pod(&self, pod: Pod) {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(pod);
    }

    /// Takes a pod to delete, picked by `pick`; `None` if there is none.
    fn take_pod(&self, pick: u64) -> Option<Pod> {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        if pods.is_empty() {
            return None;
        }
        let i = usize::try_from(pick % pods.len() as u64).unwrap_or(0);
        Some(pods.swap_remove(i))
    }

    /// Node `node`'s kubelet until `end`: a Lease renewal every heartbeat interval and a
    /// status update every node-status interval, both by compare-and-swap, staggered over
    /// the nodes so they do not all fire at once (as kubelets started at different times).
    pub(crate) async fn kubelet(
        self: Arc<Self>,
        node: u64,
        revs: (i64, i64),
        start: Instant,
        end: Instant,
    ) {
        let (mut lease_rev, mut node_rev) = revs;
        let (lease, status) = (lease_key(node), node_key(node));
        let nodes = self.shape.nodes.max(1);
        let stagger = |every: Duration| every.mul_f64(node as f64 / nodes as f64);
        let mut next_heartbeat = start + stagger(self.shape.heartbeat);
        let mut next_status = start + stagger(self.shape.node_status);
        loop {
            let next = next_heartbeat.min(next_status);
            if next >= end {
                return;
            }
            tokio::time::sleep_until(next).await;
            if next_heartbeat <= next {
                let mut kv = self.kv();
                let value = blob(self.shape.lease_size, &lease);
                let call = store::update(&mut kv, &lease, value, lease_rev);
                if let Some(Written::At(r) | Written::Conflict(r)) =
                    self.write(OpKind::LeaseUpdate, &lease, call).await
                {
                    lease_rev = r;
                }
                next_heartbeat += self.shape.heartbeat;
            }
            if next_status <= next {
                let mut kv = self.kv();
                let value = blob(self.shape.node_size, &status);
                let call = store::update(&mut kv, &status, value, node_rev);
                if let Some(Written::At(r) | Written::Conflict(r)) =
                    self.write(OpKind::NodeUpdate, &status, call).await
                {
                    node_rev = r;
                }
                next_status += self.shape.node_status;
            }
        }
    }

    /// A pod's life from creation to running: the Create, then the scheduler's binding and
    /// the kubelet's status updates (`--pod-updates` in all), with `--events-per-pod`
    /// events (Scheduled, Pulled, Created, Started).
    pub(crate) async fn create_pod(&self) {
        let mut pod = self.new_pod();
        let mut kv = self.kv();
        let value = blob(self.shape.pod_size, &pod.key);
        let call = store::create(&mut kv, &pod.key, value, 0);
        let Some(Written::At(rev)) = self.write(OpKind::PodCreate, &pod.key, call).await else {
            return;
        };
        pod.rev = rev;
        self.counts.pods_created.fetch_add(1, Ordering::Relaxed);
        for _ in 0..self.shape.pod_updates {
            if !self.update_pod(&mut pod).await {
                break;
            }
        }
        for _ in 0..self.shape.events_per_pod {
            self.event(&pod).await;
        }
        self.add_pod(pod);
    }

    /// A pod's deletion: the graceful-deletion update (deletionTimestamp), a Killing
    /// event, then the conditional Delete once the kubelet reports it stopped.
    pub(crate) async fn delete_pod(&self, pick: u64) {
        let Some(mut pod) = self.take_pod(pick) else {
            return;
        };
        if !self.update_pod(&mut pod).await {
            self.add_pod(pod);
            return;
        }
        self.event(&pod).await;
        let mut kv = self.kv();
        let call = store::delete(&mut kv, &pod.key, pod.rev);
        match self.write(OpKind::PodDelete, &pod.key, call).await {
            Some(Written::At(_)) => {
                self.counts.pods_deleted.fetch_add(1, Ordering::Relaxed);
            }
            Some(Written::Conflict(rev)) if rev != 0 => self.add_pod(Pod { rev, ..pod }),
            // Gone already (rev 0), or the request failed: forget it either way rather
            // than retry a delete forever.
            Some(Written::Conflict(_)) | None => {}
        }
    }

    /// One GuaranteedUpdate of `pod`; false if it failed or conflicted (the pod's
    /// revision is updated from the Else Get on a conflict).
    async fn update_pod(&self, pod: &mut Pod) -> bool {
        let mut kv = self.kv();
        let value = blob(self.shape.pod_size, &pod.key);
        let call = store::update(&mut kv, &pod.key, value, pod.rev);
        match self.write(OpKind::PodUpdate, &pod.key, call).await {
            Some(Written::At(rev)) => {
                pod.rev = rev;
                true
            }
            Some(Written::Conflict(rev)) => {
                pod.rev = rev;
                false
            }
            None => false,
        }
    }

    /// Creates one event about `pod`, attached to the lease manager's current lease.
    async fn event(&self, pod: &Pod) {
        let Some(lease) = self.event_lease().await else {
            return;
        };
        let n = self.next_event.fetch_add(1, Ordering::Relaxed);
        let key = format!("/registry/events/ns-{}/{}.{n:x}", pod.ns, pod.name).into_bytes();
        let mut kv = self.kv();
        let value = blob(self.shape.event_size, &key);
        let call = store::create(&mut kv, &key, value, lease);
        if let Some(Written::At(_)) = self.write(OpKind::EventCreate, &key, call).await {
            self.counts.events.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// apiserver's `leaseManager.GetLease(ttl)`; `None` if a needed Grant failed.
    async fn event_lease(&self) -> Option<i64> {
        let ttl = self.shape.event_ttl;
        // getReuseDurationSecondsLocked: 5% of the TTL, at most --lease-reuse.
        let reuse = ((ttl as f64 * 0.05) as u64).min(self.shape.lease_reuse);
        let mut manager = self.lease_manager.lock().await;
        let now = Instant::now();
        manager.attached += 1;
        if let Some((id, expiry)) = manager.prev {
            let valid = now + Duration::from_secs(ttl) < expiry;
            let sufficient = now + Duration::from_secs(ttl + reuse) > expiry;
            if valid && sufficient && manager.attached <= LEASE_MAX_OBJECTS {
                return Some(id);
            }
        }
        let granted = ttl + reuse;
        let request = LeaseGrantRequest {
            ttl: i64::try_from(granted).unwrap_or(i64::MAX),
            id: 0,
        };
        let t0 = Instant::now();
        let mut leases = self.leases.clone();
        let call = leases.lease_grant(request);
        let reply = match tokio::time::timeout(self.shape.request_timeout, call).await {
            Err(_) => Err(Status::deadline_exceeded(
                "bramble-bench: --request-timeout passed",
            )),
            Ok(r) => r,
        };
        match reply {
            Ok(reply) => {
                self.recorder.ok(OpKind::LeaseGrant, t0);
                self.counts.leases_granted.fetch_add(1, Ordering::Relaxed);
                let id = reply.into_inner().id;
                manager.prev = Some((id, now + Duration::from_secs(granted)));
                manager.attached = 1;
                Some(id)
            }
            Err(status) => {
                self.recorder.error(OpKind::LeaseGrant, &status);
                None
            }
        }
    }
}

/// A protobuf-sized value of `size` bytes: bytes that vary with the key and time, so
/// a backend cannot compress every object into the same few bytes.
pub(crate) fn blob(size: usize, key: &[u8]) -> Vec<u8> {
    let mut state = key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    state ^= std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos().into());
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        v.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    v.truncate(size);
    v
}
