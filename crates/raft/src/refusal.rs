//! Typed reasons for refusing a peer request: a [`Reason`] travels in the
//! gRPC status details of the refusal (as `bramblepb.PeerRefusal`), so the
//! sender decides from a type, not from the message text, whether the
//! receiver did nothing and another leader should be asked.

use bramble_api::bramblepb::PeerRefusal;
use prost::Message;
use tonic::{Code, Status};

pub use bramble_api::bramblepb::peer_refusal::Reason;

/// A refusal with `code` and `message` (what a peer that does not read the
/// details sees) carrying `reason`.
pub fn refusal(code: Code, message: impl Into<String>, reason: Reason) -> Status {
    let details = PeerRefusal {
        reason: reason as i32,
    }
    .encode_to_vec();
    Status::with_details(code, message, details.into())
}

/// The reason a refusal carries; `None` for any other status.
pub fn reason(status: &Status) -> Option<Reason> {
    let details = status.details();
    if details.is_empty() {
        return None;
    }
    let refusal = PeerRefusal::decode(details).ok()?;
    match Reason::try_from(refusal.reason) {
        Ok(Reason::Unspecified) | Err(_) => None,
        Ok(r) => Some(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_round_trips_and_plain_statuses_have_none() {
        let s = refusal(
            Code::FailedPrecondition,
            "not the leader",
            Reason::NotLeader,
        );
        assert_eq!(reason(&s), Some(Reason::NotLeader));
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(s.message(), "not the leader");
        let s = refusal(Code::Unknown, "x", Reason::NotPrimaryLessor);
        assert_eq!(reason(&s), Some(Reason::NotPrimaryLessor));
        assert_eq!(reason(&Status::failed_precondition("not the leader")), None);
        let garbage = Status::with_details(Code::Unknown, "x", vec![0xff, 0xff].into());
        assert_eq!(reason(&garbage), None);
    }
}
