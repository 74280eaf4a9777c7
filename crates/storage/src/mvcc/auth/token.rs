//! Simple tokens (etcd's `tokenSimple`): `<16 random letters>.<raft index>`, kept in
//! memory with an expiry that every use pushes back.
//!
//! As etcd, a token is issued by a raft entry (Authenticate, carrying the random
//! prefix the proposing member chose), so every member learns it when it applies the
//! entry, and a token from one member works on all. The expiry is each member's own
//! clock: it is memory only and never decides what an apply writes. The table is
//! bounded by expiry: an entry lives at most `ttl` after its last use, and each
//! issue sweeps the expired ones.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::AuthInfo;

/// etcd's default `--auth-token-ttl`.
const DEFAULT_TTL: Duration = Duration::from_secs(300);

struct Entry {
    user: String,
    expires: Instant,
}

struct Table {
    ttl: Duration,
    tokens: HashMap<String, Entry>,
}

/// The simple tokens a member knows.
pub(crate) struct SimpleTokens {
    table: Mutex<Table>,
}

impl Default for SimpleTokens {
    fn default() -> Self {
        SimpleTokens {
            table: Mutex::new(Table {
                ttl: DEFAULT_TTL,
                tokens: HashMap::new(),
            }),
        }
    }
}

/// What an applied entry does to the tokens, done once its commit succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenChange {
    /// Authenticate issued `token` (first) for a user (second).
    Assign(String, String),
    /// The user was deleted or its password changed.
    InvalidateUser(String),
    /// Auth was disabled.
    Clear,
}

impl SimpleTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A map of plain values: a panic cannot leave an entry half written.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tokens live `ttl` after their last use from now on.
    pub(crate) fn set_ttl(&self, ttl: Duration) {
        self.lock().ttl = ttl;
    }

    /// Applies a change.
    pub(crate) fn change(&self, change: TokenChange) {
        let now = Instant::now();
        let mut t = self.lock();
        match change {
            TokenChange::Assign(token, user) => {
                t.tokens.retain(|_, e| e.expires > now);
                let expires = now + t.ttl;
                t.tokens.insert(token, Entry { user, expires });
            }
            TokenChange::InvalidateUser(user) => t.tokens.retain(|_, e| e.user != user),
            TokenChange::Clear => t.tokens.clear(),
        }
    }

    /// Who `token` names, if it is live, at auth `revision`: as etcd's simple
    /// tokens, a token holds only a user name and is checked at the auth revision
    /// of the moment it is used (only a change between that moment and the apply
    /// makes it old). Its life is extended (etcd resets a simple token's TTL on each
    /// use).
    pub(crate) fn info(&self, token: &str, revision: u64) -> Option<AuthInfo> {
        let now = Instant::now();
        let mut t = self.lock();
        let ttl = t.ttl;
        let entry = t.tokens.get_mut(token)?;
        if entry.expires <= now {
            t.tokens.remove(token);
            return None;
        }
        entry.expires = now + ttl;
        Some(AuthInfo {
            user: entry.user.clone(),
            revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(user: &str) -> AuthInfo {
        AuthInfo {
            user: user.into(),
            revision: 3,
        }
    }

    fn assign(token: &str, user: &str) -> TokenChange {
        TokenChange::Assign(token.into(), user.into())
    }

    #[test]
    fn lookup_expiry_and_invalidation() {
        let tokens = SimpleTokens::default();
        tokens.set_ttl(Duration::from_millis(200));
        tokens.change(assign("t.1", "u"));
        assert_eq!(tokens.info("t.1", 3), Some(info("u")));
        assert_eq!(tokens.info("nope.1", 3), None);
        tokens.change(assign("o.2", "v"));
        tokens.change(TokenChange::InvalidateUser("u".into()));
        assert_eq!(tokens.info("t.1", 3), None);
        assert_eq!(tokens.info("o.2", 3), Some(info("v")));
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(tokens.info("o.2", 3), None);
        tokens.change(assign("w.3", "w"));
        tokens.change(TokenChange::Clear);
        assert_eq!(tokens.info("w.3", 3), None);
    }
}
