//! The auth flags: `--auth-token`, `--auth-token-ttl`, `--bcrypt-cost`, parsed and
//! checked as etcd does.

use std::time::Duration;

/// etcd's default `--bcrypt-cost` (bcrypt's `DefaultCost`).
pub const DEFAULT_BCRYPT_COST: u32 = 10;
/// bcrypt's `MinCost`.
pub const MIN_BCRYPT_COST: u32 = 4;
/// bcrypt's `MaxCost`.
pub const MAX_BCRYPT_COST: u32 = 31;
/// etcd's default `--auth-token-ttl`, seconds.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 300;

/// How tokens are issued (`--auth-token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// `simple`: random tokens kept in memory (etcd's default).
    Simple,
}

/// The auth options of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOptions {
    /// The token provider.
    pub token: TokenKind,
    /// How long an unused simple token lives.
    pub token_ttl: Duration,
    /// The cost of the bcrypt hashes of new passwords.
    pub bcrypt_cost: u32,
    /// etcd's `--client-cert-auth`: a request without a token is made by the user
    /// its client certificate's common name names.
    pub client_cert_auth: bool,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            token: TokenKind::Simple,
            token_ttl: Duration::from_secs(DEFAULT_TOKEN_TTL_SECS),
            bcrypt_cost: DEFAULT_BCRYPT_COST,
            client_cert_auth: false,
        }
    }
}

/// Parses `--auth-token` as etcd's `decomposeOpts` and `NewTokenProvider`: a type,
/// then `name=value` options separated by commas. `simple` is served; `jwt` is
/// refused (not implemented: accepting it and issuing simple tokens would silently
/// change what clients get), as is anything else.
pub fn parse_auth_token(flag: &str) -> Result<TokenKind, String> {
    let mut parts = flag.split(',');
    let kind = parts.next().unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    for opt in parts {
        let pair: Vec<&str> = opt.split('=').collect();
        if pair.len() != 2 || !seen.insert(pair[0]) {
            return Err(format!(
                "--auth-token {flag:?}: invalid token option {opt:?} (auth: invalid auth options)"
            ));
        }
    }
    match kind {
        "simple" => Ok(TokenKind::Simple),
        "jwt" => Err(format!(
            "--auth-token {flag:?}: JWT tokens are not supported by bramble yet; use --auth-token simple"
        )),
        other => Err(format!(
            "--auth-token {flag:?}: unknown token type {other:?} (auth: invalid auth options)"
        )),
    }
}

/// Checks `--bcrypt-cost`: etcd accepts bcrypt's range, 4 to 31. (etcd itself falls
/// back to the default with a warning; a cost silently replaced is worse than a
/// refusal, so Bramble refuses.)
pub fn check_bcrypt_cost(cost: u32) -> Result<u32, String> {
    if (MIN_BCRYPT_COST..=MAX_BCRYPT_COST).contains(&cost) {
        Ok(cost)
    } else {
        Err(format!(
            "--bcrypt-cost {cost}: must be between {MIN_BCRYPT_COST} and {MAX_BCRYPT_COST}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_token_flag() {
        assert_eq!(parse_auth_token("simple"), Ok(TokenKind::Simple));
        let jwt = parse_auth_token("jwt,pub-key=a.pub,priv-key=a,sign-method=RS256,ttl=10m");
        assert!(jwt.unwrap_err().contains("JWT tokens are not supported"));
        assert!(parse_auth_token("simple,x").is_err());
        assert!(parse_auth_token("jwt,a=1,a=2")
            .unwrap_err()
            .contains("invalid token option"));
        assert!(parse_auth_token("other")
            .unwrap_err()
            .contains("unknown token type"));
        assert!(parse_auth_token("").is_err());
    }

    #[test]
    fn bcrypt_cost_range() {
        assert_eq!(check_bcrypt_cost(4), Ok(4));
        assert_eq!(check_bcrypt_cost(31), Ok(31));
        assert!(check_bcrypt_cost(3).is_err());
        assert!(check_bcrypt_cost(32).is_err());
    }
}
