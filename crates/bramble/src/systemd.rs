//! Readiness for systemd, as etcd's `notifySystemd`: a `Type=notify` unit (the one the
//! packages install) is started once the member serves clients. As etcd, nothing else is
//! sent (systemd knows a stop it asked for).
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) this does nothing. A failed notification is
//! logged, not fatal: the member serves either way, and systemd's start timeout reports
//! a unit that never became ready.

use sd_notify::NotifyState;

/// Tells the service manager the member serves clients (etcd: once it has published
/// itself to the cluster).
pub(crate) fn notify_ready() {
    notify(NotifyState::Ready, "readiness");
}

fn notify(state: NotifyState<'_>, what: &str) {
    match sd_notify::notify(false, &[state]) {
        Ok(()) => {
            if std::env::var_os("NOTIFY_SOCKET").is_some() {
                tracing::info!("notified systemd of {what}");
            }
        }
        Err(e) => tracing::warn!("cannot notify systemd of {what}: {e}"),
    }
}
