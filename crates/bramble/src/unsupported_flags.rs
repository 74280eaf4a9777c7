//! etcd flags that Bramble does not implement, and what it does with each.
//!
//! An etcd command line (a kubeadm manifest, a k3s or systemd unit) should start
//! Bramble unchanged, so a flag that only tunes something Bramble does differently is
//! accepted with a warning and dropped. A flag whose silent loss would change safety
//! (security, durability, which cluster a member forms) refuses to start instead,
//! unless it is set to its off value: certificate revocation lists (ignoring one would
//! let a revoked certificate in), and discovery and the v2 proxy (another way to form a
//! cluster). The same judgement applies to the settings of a
//! `--config-file` (crate::config_file). etcd 3.6's `--feature-gates` are read here too
//! ([`feature_gates`]): the corruption check gates are implemented, the others are
//! harmless to ignore.
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
}

/// What Bramble does with one of etcd 3.6's server feature gates.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Implemented: its value is passed on.
    Implemented,
    /// Harmless to ignore (a performance choice, or a lease behaviour that is off
    /// by default in etcd too): a warning.
    Ignored,
}

/// etcd 3.6's server feature gates.
const FEATURE_GATES: &[(&str, Gate)] = &[
    ("InitialCorruptCheck", Gate::Implemented),
    ("CompactHashCheck", Gate::Implemented),
    ("StopGRPCServiceOnDefrag", Gate::Ignored),
    ("TxnModeWriteWithSharedBuffer", Gate::Ignored),
    ("LeaseCheckpoint", Gate::Ignored),
    ("LeaseCheckpointPersist", Gate::Ignored),
    ("SetMemberLocalAddr", Gate::Ignored),
    ("AllAlpha", Gate::Ignored),
    ("AllBeta", Gate::Ignored),
];

/// The implemented gates a `--feature-gates` value sets, and the warnings for the
/// ignored ones that are set.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FeatureGates {
    /// (gate, value) of each implemented gate named, in order.
    pub(crate) set: Vec<(String, bool)>,
    /// Warnings to log.
    pub(crate) warnings: Vec<String>,
}

impl FeatureGates {
    /// The value given to gate `name`, if it was named.
    pub(crate) fn get(&self, name: &str) -> Option<bool> {
        self.set
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

/// Reads `--feature-gates` (`Name=true,Other=false`) as etcd parses it: an unknown
/// gate or a value that is not a boolean is an error.
pub(crate) fn feature_gates(value: &str) -> Result<FeatureGates, String> {
    let how = "--feature-gates";
    let mut gates = FeatureGates::default();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, setting) = pair
            .split_once('=')
            .ok_or_else(|| format!("{how}: missing bool value for {pair}"))?;
        let name = name.trim();
        let on = parse_go_bool(setting.trim())
            .map_err(|_| format!("{how}: invalid value of {name}={}", setting.trim()))?;
        let (_, gate) = FEATURE_GATES
            .iter()
            .find(|(gate, _)| *gate == name)
            .ok_or_else(|| format!("{how}: unrecognized feature gate: {name}"))?;
        match gate {
            Gate::Implemented => gates.set.push((name.to_string(), on)),
            Gate::Ignored => gates.warnings.push(format!(
                "{how}: {name}={on} is not supported by bramble yet; ignoring it"
            )),
        }
    }
    Ok(gates)
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_go_bool(text: &str) -> Result<bool, String> {
    match text {
        v if GO_FALSE.contains(&v) => Ok(false),
        "true" | "1" | "t" | "T" | "TRUE" | "True" => Ok(true),
        other => Err(format!("invalid boolean {other:?}")),
    }
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

const CRL: &str =
    "certificate revocation lists are not implemented: a revoked certificate would be let in";

/// Every etcd flag Bramble knows and does not implement. Listed so a typo in a real
/// flag is still an error.
const UNSUPPORTED: &[UnsupportedFlag] = &[
    ignored("metrics", true),
    ignored("logger", true),
    ignored("log-outputs", true),
    ignored("enable-v2", true),
    ignored("enable-pprof", false),
    ignored("strict-reconfig-check", false),
    ignored("pre-vote", false),
    ignored("max-snapshots", true),
    ignored("max-wals", true),
    refused("client-crl-file", true, EMPTY, CRL),
    refused("peer-crl-file", true, EMPTY, CRL),
    refused(
        "experimental-peer-skip-client-san-verification",
        false,
        GO_FALSE,
        "skipping the SAN check of peer certificates is not implemented",
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
    ignored("cors", true),
    ignored("host-whitelist", true),
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
        let skip = "experimental-peer-skip-client-san-verification";
        assert!(judge(skip, "--x", None).is_err());
        assert!(judge(skip, "x", Some("true")).is_err());
        assert!(judge(skip, "x", Some("false")).is_ok());
        assert!(judge("client-crl-file", "x", Some("/etc/crl.pem")).is_err());
        assert!(judge("client-crl-file", "x", Some("")).is_ok());
        assert!(judge("proxy", "x", Some("on")).is_err());
        assert!(judge("proxy", "x", Some("off")).is_ok());
    }

    #[test]
    fn feature_gates_as_etcd_parses_them() {
        assert_eq!(feature_gates(""), Ok(FeatureGates::default()));
        let ignored =
            feature_gates("StopGRPCServiceOnDefrag=true,LeaseCheckpoint=true").expect("accepted");
        assert!(ignored.set.is_empty());
        assert_eq!(ignored.warnings.len(), 2);
        let gates = feature_gates("InitialCorruptCheck=true,CompactHashCheck=false").expect("ok");
        assert_eq!(gates.get("InitialCorruptCheck"), Some(true));
        assert_eq!(gates.get("CompactHashCheck"), Some(false));
        assert_eq!(gates.get("LeaseCheckpoint"), None);
        assert!(gates.warnings.is_empty());
        let unknown = feature_gates("NoSuchGate=true").expect_err("unknown");
        assert!(unknown.contains("unrecognized feature gate"), "{unknown}");
        assert!(feature_gates("LeaseCheckpoint").is_err(), "no value");
        assert!(feature_gates("LeaseCheckpoint=maybe").is_err());
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
