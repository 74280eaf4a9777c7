//! etcd flags that Bramble does not implement, and what it does with each.
//!
//! An etcd command line (a kubeadm manifest, a k3s or systemd unit) should start
//! Bramble unchanged, so a flag that only tunes something Bramble does differently is
//! accepted with a warning and dropped. A flag whose silent loss would change safety
//! (security, durability, which cluster a member forms) refuses to start instead,
//! unless it is set to its off value: TLS and client-certificate auth (ignoring them
//! would serve in plain text whoever connects), the corruption checks (the operator counts on
//! them), discovery and the v2 proxy (another way to form a cluster), and
//! `--config-file` (it may set any of these).
//!
//! Any flag that is in neither list nor known to clap is an error (a misspelt flag).

/// The values Go's `strconv.ParseBool` reads as false.
const GO_FALSE: &[&str] = &["false", "0", "f", "F", "FALSE", "False"];
/// An unset string flag.
const EMPTY: &[&str] = &[""];

/// What Bramble does with one unsupported etcd flag.
enum Handling {
    /// Harmless to ignore: logged as a warning and dropped.
    Ignored,
    /// Refused unless set to one of these values (compared as text); `why` says
    /// what ignoring it would change.
    RefusedUnlessOff {
        off: &'static [&'static str],
        why: &'static str,
    },
    /// etcd 3.6's `--feature-gates=Name=bool,...`: each gate judged on its own
    /// ([`FEATURE_GATES`]).
    FeatureGates,
}

/// etcd 3.6's server feature gates, and whether turning each on changes safety.
/// `None`: harmless to ignore (a performance choice, or a lease behaviour that is
/// off by default in etcd too); `Some(why)`: refused when set to true.
const FEATURE_GATES: &[(&str, Option<&str>)] = &[
    ("InitialCorruptCheck", Some(CORRUPT_CHECK)),
    ("CompactHashCheck", Some(CORRUPT_CHECK)),
    ("StopGRPCServiceOnDefrag", None),
    ("TxnModeWriteWithSharedBuffer", None),
    ("LeaseCheckpoint", None),
    ("LeaseCheckpointPersist", None),
    ("SetMemberLocalAddr", None),
    ("AllAlpha", None),
    ("AllBeta", None),
];

/// Judges `--feature-gates` (`Name=true,Other=false`) as etcd parses it: an unknown
/// gate or a value that is not a boolean is an error; a gate Bramble cannot honour
/// set to true refuses to start.
fn judge_feature_gates(how: &str, value: &str) -> Result<String, String> {
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, setting) = pair
            .split_once('=')
            .ok_or_else(|| format!("{how}: missing bool value for {pair}"))?;
        let on = match setting.trim() {
            v if GO_FALSE.contains(&v) => false,
            "true" | "1" | "t" | "T" | "TRUE" | "True" => true,
            other => return Err(format!("{how}: invalid value of {name}={other}")),
        };
        let (_, why) = FEATURE_GATES
            .iter()
            .find(|(gate, _)| *gate == name.trim())
            .ok_or_else(|| format!("{how}: unrecognized feature gate: {name}"))?;
        if let (true, Some(why)) = (on, why) {
            return Err(format!(
                "{how}: {name}=true is not supported by bramble yet and would change \
                 safety: {why}. Refusing to start rather than ignore it"
            ));
        }
    }
    Ok(format!(
        "{how} is not supported by bramble yet; ignoring it"
    ))
}

/// One etcd flag Bramble does not implement.
struct UnsupportedFlag {
    name: &'static str,
    /// Whether the flag takes a value (`--name value`); a boolean flag alone means
    /// true, and takes its value only inline (`--flag=false`), as Go's flag package.
    takes_value: bool,
    handling: Handling,
}

const fn ignored(name: &'static str, takes_value: bool) -> UnsupportedFlag {
    UnsupportedFlag {
        name,
        takes_value,
        handling: Handling::Ignored,
    }
}

const fn refused(
    name: &'static str,
    takes_value: bool,
    off: &'static [&'static str],
    why: &'static str,
) -> UnsupportedFlag {
    UnsupportedFlag {
        name,
        takes_value,
        handling: Handling::RefusedUnlessOff { off, why },
    }
}

const TLS: &str = "TLS is not implemented yet: the member would serve without it";
const CORRUPT_CHECK: &str = "corruption checks are not implemented yet";

/// Every etcd flag Bramble knows and does not implement. Listed so a typo in a real
/// flag is still an error.
const UNSUPPORTED: &[UnsupportedFlag] = &[
    refused("client-cert-auth", false, GO_FALSE, TLS),
    refused("peer-client-cert-auth", false, GO_FALSE, TLS),
    refused("cert-file", true, EMPTY, TLS),
    refused("key-file", true, EMPTY, TLS),
    refused("trusted-ca-file", true, EMPTY, TLS),
    refused("peer-cert-file", true, EMPTY, TLS),
    refused("peer-key-file", true, EMPTY, TLS),
    refused("peer-trusted-ca-file", true, EMPTY, TLS),
    refused("auto-tls", false, GO_FALSE, TLS),
    refused("peer-auto-tls", false, GO_FALSE, TLS),
    ignored("metrics", true),
    ignored("logger", true),
    ignored("log-outputs", true),
    ignored("enable-v2", true),
    ignored("enable-pprof", false),
    ignored("strict-reconfig-check", false),
    ignored("pre-vote", false),
    ignored("max-snapshots", true),
    ignored("max-wals", true),
    // Only constrain TLS, which refuses to start above.
    ignored("cipher-suites", true),
    ignored("tls-min-version", true),
    ignored("tls-max-version", true),
    refused(
        "experimental-initial-corrupt-check",
        false,
        GO_FALSE,
        CORRUPT_CHECK,
    ),
    refused(
        "experimental-corrupt-check-time",
        true,
        &["0", "0s"],
        CORRUPT_CHECK,
    ),
    // etcd 3.6's name.
    refused("corrupt-check-time", true, &["0", "0s"], CORRUPT_CHECK),
    // Only with the compact hash check, refused above and below.
    ignored("compact-hash-check-time", true),
    ignored("experimental-compact-hash-check-time", true),
    UnsupportedFlag {
        name: "feature-gates",
        takes_value: true,
        handling: Handling::FeatureGates,
    },
    refused(
        "experimental-compact-hash-check-enabled",
        false,
        GO_FALSE,
        CORRUPT_CHECK,
    ),
    ignored("experimental-enable-distributed-tracing", false),
    ignored("experimental-backend-bbolt-freelist-type", true),
    ignored("backend-bbolt-freelist-type", true),
    ignored("socket-reuse-port", false),
    ignored("socket-reuse-address", false),
    // Bramble fsyncs every write whatever this says: ignoring it is the safe side.
    ignored("unsafe-no-fsync", false),
    refused(
        "discovery",
        true,
        EMPTY,
        "discovery is not implemented: use --initial-cluster",
    ),
    refused(
        "discovery-srv",
        true,
        EMPTY,
        "discovery is not implemented: use --initial-cluster",
    ),
    refused("proxy", true, &["off"], "the v2 proxy is not implemented"),
    // The WAL stays under the data dir, fsynced as always.
    ignored("wal-dir", true),
    refused(
        "config-file",
        true,
        EMPTY,
        "config files are not read yet: its settings would be ignored, pass them as flags",
    ),
    ignored("cors", true),
    ignored("host-whitelist", true),
    ignored("auth-token", true),
    ignored("bcrypt-cost", true),
    ignored("debug", false),
];

/// What to do with a flag found on the command line.
pub(crate) enum Verdict {
    /// Not an unsupported flag: clap parses it.
    Supported,
    /// Dropped; `takes_value` says whether a separate value follows.
    Dropped { takes_value: bool },
}

/// Looks `name` up; `Supported` if Bramble implements it (or does not know it).
pub(crate) fn lookup(name: &str) -> Verdict {
    match find(name) {
        Some(flag) => Verdict::Dropped {
            takes_value: flag.takes_value,
        },
        None => Verdict::Supported,
    }
}

fn find(name: &str) -> Option<&'static UnsupportedFlag> {
    UNSUPPORTED.iter().find(|f| f.name == name)
}

/// Judges an unsupported flag given as `how` (`--name=value` or an `ETCD_*`
/// variable) with `value` (`None`: a boolean flag given alone, so true). Returns the
/// warning to log, or the reason to refuse to start.
pub(crate) fn judge(name: &str, how: &str, value: Option<&str>) -> Result<String, String> {
    let Some(flag) = find(name) else {
        return Ok(String::new());
    };
    match flag.handling {
        Handling::Ignored => Ok(format!(
            "{how} is not supported by bramble yet; ignoring it"
        )),
        Handling::FeatureGates => judge_feature_gates(how, value.unwrap_or("")),
        Handling::RefusedUnlessOff { off, why } => {
            // A boolean flag alone is true; a value flag alone takes no value here
            // (the caller consumed it), which counts as set.
            let value = value.unwrap_or(if flag.takes_value { "?" } else { "true" });
            if off.contains(&value) {
                Ok(format!("{how} is off, as bramble requires; ignoring it"))
            } else {
                Err(format!(
                    "{how} is not supported by bramble yet and would change safety: {why}. \
                     Refusing to start rather than ignore it (set it to {:?} or remove it)",
                    off.first().copied().unwrap_or("")
                ))
            }
        }
    }
}

/// Judges the `ETCD_*` variables of unsupported flags that are set: the warnings to
/// log, or the first reason to refuse to start.
pub(crate) fn judge_env() -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    for flag in UNSUPPORTED {
        let var = crate::config::env_name(flag.name);
        if let Some(value) = std::env::var_os(&var) {
            let value = value.to_string_lossy();
            warnings.push(judge(flag.name, &format!("{var}={value}"), Some(&value))?);
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safety_flags_refuse_unless_off() {
        assert!(judge("client-cert-auth", "--client-cert-auth", None).is_err());
        assert!(judge("client-cert-auth", "x", Some("true")).is_err());
        assert!(judge("client-cert-auth", "x", Some("false")).is_ok());
        assert!(judge("cert-file", "x", Some("/etc/cert.pem")).is_err());
        assert!(judge("cert-file", "x", Some("")).is_ok());
        assert!(judge("experimental-corrupt-check-time", "x", Some("1m")).is_err());
        assert!(judge("experimental-corrupt-check-time", "x", Some("0s")).is_ok());
        assert!(judge("config-file", "x", Some("/etc/etcd.yaml")).is_err());
        assert!(judge("proxy", "x", Some("on")).is_err());
        assert!(judge("proxy", "x", Some("off")).is_ok());
        let why = judge(
            "experimental-initial-corrupt-check",
            "--e=true",
            Some("true"),
        )
        .expect_err("refused");
        assert!(why.contains("corruption checks"), "{why}");
    }

    #[test]
    fn feature_gates_as_etcd_parses_them() {
        let gates = |v: &str| judge("feature-gates", "--feature-gates", Some(v));
        assert!(gates("").is_ok());
        assert!(gates("StopGRPCServiceOnDefrag=true,LeaseCheckpoint=true").is_ok());
        assert!(gates("InitialCorruptCheck=false,CompactHashCheck=false").is_ok());
        let refused = gates("InitialCorruptCheck=true").expect_err("refused");
        assert!(refused.contains("Refusing to start"), "{refused}");
        assert!(gates("CompactHashCheck=true").is_err());
        let unknown = gates("NoSuchGate=true").expect_err("unknown");
        assert!(unknown.contains("unrecognized feature gate"), "{unknown}");
        assert!(gates("LeaseCheckpoint").is_err(), "no value");
        assert!(gates("LeaseCheckpoint=maybe").is_err());
    }

    #[test]
    fn harmless_flags_only_warn() {
        for name in ["max-snapshots", "unsafe-no-fsync", "wal-dir", "max-wals"] {
            let warning = judge(name, name, Some("1")).expect("accepted");
            assert!(warning.contains("ignoring"), "{warning}");
        }
    }

    #[test]
    fn every_flag_is_listed_once() {
        for (i, flag) in UNSUPPORTED.iter().enumerate() {
            assert!(
                UNSUPPORTED[..i].iter().all(|f| f.name != flag.name),
                "{} listed twice",
                flag.name
            );
        }
    }
}
