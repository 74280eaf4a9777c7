//! The random prefix of a simple token (etcd's `genTokenPrefix`): 16 letters. The
//! member that checked the password chooses it and proposes it; the token is the
//! prefix, `.`, and the raft index of the Authenticate entry (see
//! `bramble_storage::mvcc`'s auth tokens).

/// Letters of a token prefix (etcd's `letters`).
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Letters in a token prefix (etcd's `defaultSimpleTokenLength`).
const PREFIX_LEN: usize = 16;

/// A token prefix: 16 random letters, each uniform (bytes past the last whole
/// multiple of 52 are drawn again).
pub(crate) fn prefix() -> Result<String, getrandom::Error> {
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

#[cfg(test)]
mod tests {
    #[test]
    fn prefixes_are_16_random_letters() {
        let p = super::prefix().unwrap();
        assert_eq!(p.len(), 16);
        assert!(p.bytes().all(|b| b.is_ascii_alphabetic()));
        assert_ne!(p, super::prefix().unwrap());
    }
}
