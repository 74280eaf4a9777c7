//! A started member's bookkeeping in the membership, as etcd's `publish`:
//! once a leader exists, the member records its name and client URLs (a
//! member added by `member add` has neither until it starts, and the other
//! initial members know only its name), so `member list` shows every started
//! member with its addresses. The same task notices when the cluster removed
//! this member, so it stops instead of serving a cluster it left.

use std::sync::Arc;
use std::time::Duration;

use bramble_raft::RaftNode;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the member checks whether it was removed.
const REMOVAL_CHECK: Duration = Duration::from_secs(2);

/// The first and the longest pause between publish attempts.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What the task reports.
pub(crate) struct Signals {
    /// Turns true once the membership has this member's name and client
    /// URLs (etcd serves clients only from then on).
    pub published: watch::Sender<bool>,
    /// Turns true once the cluster removed this member.
    pub removed: watch::Sender<bool>,
}

/// Publishes `name` and `client_urls` until the membership has them, then
/// watches for this member's removal. Ends when `stop` is cancelled.
pub(crate) async fn publish_and_watch(
    node: Arc<RaftNode>,
    name: String,
    client_urls: Vec<String>,
    stop: CancellationToken,
    signals: Signals,
) {
    let mut published = false;
    let mut pause = Duration::ZERO;
    let mut next_removal_check = tokio::time::Instant::now() + REMOVAL_CHECK;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(if published { REMOVAL_CHECK } else { pause }) => {}
            _ = stop.cancelled() => return,
        }
        pause = pause.max(RETRY_MIN);
        if !published {
            match node.is_published(&name, &client_urls) {
                Some(true) => published = true,
                // Not a member yet as far as this member knows (it joined
                // and has not received the membership): wait.
                None => {}
                Some(false) if node.status().leader == 0 => {}
                Some(false) => match node.publish(name.clone(), client_urls.clone()).await {
                    Ok(_) => {
                        tracing::info!(
                            "published local member to cluster through raft: name={name} client-urls={}",
                            client_urls.join(",")
                        );
                        published = true;
                    }
                    Err(e) => {
                        tracing::debug!("publish failed, will retry: {e}");
                        pause = (pause * 2).min(RETRY_MAX);
                    }
                },
            }
        }
        if tokio::time::Instant::now() >= next_removal_check {
            next_removal_check = tokio::time::Instant::now() + REMOVAL_CHECK;
            if node.is_removed().await {
                tracing::error!("the member has been permanently removed from the cluster");
                let _ = signals.removed.send(true);
                return;
            }
        }
        if published {
            signals
                .published
                .send_if_modified(|p| !std::mem::replace(p, true));
        }
    }
}
