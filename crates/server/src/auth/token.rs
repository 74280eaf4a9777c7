//! Simple tokens (etcd's `tokenSimple`): 16 random letters, `.`, and the raft index
//! they were issued at, kept in memory with an expiry that every use pushes back.
//!
//! The table is bounded by expiry: an entry lives at most `ttl` after its last use,
//! and each issue sweeps the expired ones. etcd replicates simple tokens to every
//! member through its log; here a token is known to the member that issued it only
//! (see the module docs of [`super`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bramble_storage::mvcc::AuthInfo;

/// Letters of a token prefix (etcd's `letters`).
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Letters in a token prefix (etcd's `defaultSimpleTokenLength`).
const PREFIX_LEN: usize = 16;

struct Entry {
    info: AuthInfo,
    expires: Instant,
}

/// The simple tokens of this member.
pub(crate) struct SimpleTokens {
    ttl: Duration,
    tokens: Mutex<HashMap<String, Entry>>,
}

/// A token prefix: 16 random letters (etcd's `genTokenPrefix`), each uniform
/// (bytes past the last whole multiple of 52 are drawn again).
fn prefix() -> Result<String, getrandom::Error> {
    let unbiased = LETTERS.len() * (256 / LETTERS.len());
    let mut out = String::with_capacity(PREFIX_LEN);
    let mut buf = [0u8; 32];
    while out.len() < PREFIX_LEN {
        getrandom::fill(&mut buf)?;
        for b in buf
            .iter()
            .map(|b| usize::from(*b))
            .filter(|b| *b < unbiased)
        {
            if out.len() < PREFIX_LEN {
                out.push(char::from(LETTERS[b % LETTERS.len()]));
            }
        }
    }
    Ok(out)
}

impl SimpleTokens {
    /// Tokens that live `ttl` after their last use.
    pub(crate) fn new(ttl: Duration) -> Self {
        SimpleTokens {
            ttl,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A map of plain values: a panic cannot leave an entry half written.
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Issues a token for `info`, naming raft index `index`.
    pub(crate) fn assign(&self, info: AuthInfo, index: u64) -> Result<String, getrandom::Error> {
        let token = format!("{}.{index}", prefix()?);
        let now = Instant::now();
        let mut tokens = self.lock();
        tokens.retain(|_, e| e.expires > now);
        tokens.insert(
            token.clone(),
            Entry {
                info,
                expires: now + self.ttl,
            },
        );
        Ok(token)
    }

    /// Who `token` names, if it is live; its life is extended (etcd resets a simple
    /// token's TTL on each use).
    pub(crate) fn info(&self, token: &str) -> Option<AuthInfo> {
        let now = Instant::now();
        let mut tokens = self.lock();
        let entry = tokens.get_mut(token)?;
        if entry.expires <= now {
            tokens.remove(token);
            return None;
        }
        entry.expires = now + self.ttl;
        Some(entry.info.clone())
    }

    /// Forgets every token of `user` (deleted, or its password changed).
    pub(crate) fn invalidate_user(&self, user: &str) {
        self.lock().retain(|_, e| e.info.user != user);
    }

    /// Forgets every token (auth disabled).
    pub(crate) fn clear(&self) {
        self.lock().clear();
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

    #[test]
    fn format_lookup_expiry_and_invalidation() {
        let tokens = SimpleTokens::new(Duration::from_millis(200));
        let t = tokens.assign(info("u"), 42).unwrap();
        let (p, i) = t.split_once('.').unwrap();
        assert_eq!(p.len(), 16);
        assert!(p.bytes().all(|b| b.is_ascii_alphabetic()));
        assert_eq!(i, "42");
        assert_eq!(tokens.info(&t), Some(info("u")));
        assert_eq!(tokens.info("nope.1"), None);
        let other = tokens.assign(info("v"), 43).unwrap();
        assert_ne!(other, t);
        tokens.invalidate_user("u");
        assert_eq!(tokens.info(&t), None);
        assert_eq!(tokens.info(&other), Some(info("v")));
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(tokens.info(&other), None);
        let t = tokens.assign(info("w"), 44).unwrap();
        tokens.clear();
        assert_eq!(tokens.info(&t), None);
    }
}
