//! Why a membership change failed: [`MembershipError`], its encoding in the
//! peer protocol's `ChangeMembersReply.refused`, and the leader-side
//! [`LeaderError`].

use bramble_api::bramblepb::change_members_reply::Refused;

use crate::error::ProposeError;

/// Why a membership operation failed; the server maps these to etcd's errors.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// `etcdserver: member not found`
    #[error("member not found")]
    NotFound,
    /// `etcdserver: Peer URLs already exists`
    #[error("peer URLs already exist")]
    PeerUrlsExist,
    /// `etcdserver: member ID already exist`
    #[error("member id already exists")]
    MemberExists,
    /// `etcdserver: can only promote a learner member`
    #[error("not a learner")]
    NotLearner,
    /// `etcdserver: can only promote a learner member which is in sync with leader`
    #[error("learner not in sync with the leader")]
    LearnerNotReady,
    /// `etcdserver: too many learner members in cluster`
    #[error("too many learners")]
    TooManyLearners,
    /// `etcdserver: re-configuration failed due to not enough started members`
    #[error("not enough started members")]
    NotEnoughStarted,
    /// `etcdserver: unhealthy cluster`
    #[error("unhealthy cluster")]
    Unhealthy,
    /// `etcdserver: not leader` (MoveLeader must be sent to the leader)
    #[error("not leader")]
    NotLeader,
    /// `etcdserver: bad leader transferee`
    #[error("bad leader transferee")]
    BadLeaderTransferee,
    /// `etcdserver: request timed out, leader transfer took too long`
    #[error("leader transfer took too long")]
    LeaderTransferTimeout,
    /// The change could not be proposed or committed.
    #[error(transparent)]
    Propose(#[from] ProposeError),
}

impl MembershipError {
    pub(super) fn from_refused(r: Refused) -> Option<Self> {
        Some(match r {
            Refused::None => return None,
            Refused::MemberNotFound => MembershipError::NotFound,
            Refused::PeerUrlsExist => MembershipError::PeerUrlsExist,
            Refused::MemberExists => MembershipError::MemberExists,
            Refused::NotLearner => MembershipError::NotLearner,
            Refused::LearnerNotReady => MembershipError::LearnerNotReady,
            Refused::TooManyLearners => MembershipError::TooManyLearners,
            Refused::NotEnoughStarted => MembershipError::NotEnoughStarted,
            Refused::Unhealthy => MembershipError::Unhealthy,
        })
    }

    pub(super) fn refused(&self) -> Option<Refused> {
        Some(match self {
            MembershipError::NotFound => Refused::MemberNotFound,
            MembershipError::PeerUrlsExist => Refused::PeerUrlsExist,
            MembershipError::MemberExists => Refused::MemberExists,
            MembershipError::NotLearner => Refused::NotLearner,
            MembershipError::LearnerNotReady => Refused::LearnerNotReady,
            MembershipError::TooManyLearners => Refused::TooManyLearners,
            MembershipError::NotEnoughStarted => Refused::NotEnoughStarted,
            MembershipError::Unhealthy => Refused::Unhealthy,
            _ => return None,
        })
    }
}

/// Why the leader did not make a change.
pub(crate) enum LeaderError {
    /// This member does not lead (any more); nothing was proposed.
    NotLeader,
    /// The change was refused or failed.
    Failed(MembershipError),
}

impl From<MembershipError> for LeaderError {
    fn from(e: MembershipError) -> Self {
        LeaderError::Failed(e)
    }
}

impl From<ProposeError> for LeaderError {
    fn from(e: ProposeError) -> Self {
        LeaderError::Failed(e.into())
    }
}
