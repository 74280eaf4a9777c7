//! etcd's `--config-file`: a YAML file whose keys are the flags' names, read as etcd reads
//! it. When a config file is given, etcd ignores every other command-line flag and
//! `ETCD_*` variable; so does Bramble.
//!
//! The file is turned into the equivalent command line and goes through the same parsing
//! as flags do (one mechanism: renamed names warn, unsupported safety settings refuse, a
//! misspelt key is an error). The YAML forms etcd takes:
//! - scalars: `name: infra1`, `snapshot-count: 10000`, `enable-v2: false`;
//! - durations as integer nanoseconds (Go's `time.Duration` in JSON), or Go duration text;
//! - lists joined with commas (`log-outputs: [stderr]`);
//! - `client-transport-security` and `peer-transport-security` maps, whose keys become the
//!   TLS flags of each port ([`security_flag`]);
//! - `null` or an empty value leaves the default.
//!
//! Unlike etcd, an unknown key is an error rather than silently skipped: a misspelt safety
//! setting must not pass unnoticed.

use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

/// The flag naming the file.
pub(crate) const FLAG: &str = "config-file";

/// The variable naming the file when the flag is absent (etcd reads it too).
const ENV: &str = "ETCD_CONFIG_FILE";

/// Config files above this size are refused: etcd's are a few KiB.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Keys whose values are Go durations: an integer in the file is nanoseconds.
const DURATION_KEYS: &[&str] = &[
    "grpc-keepalive-min-time",
    "grpc-keepalive-interval",
    "grpc-keepalive-timeout",
    "watch-progress-notify-interval",
    "experimental-watch-progress-notify-interval",
    "compaction-sleep-interval",
    "experimental-compaction-sleep-interval",
    "corrupt-check-time",
    "experimental-corrupt-check-time",
    "compact-hash-check-time",
    "experimental-compact-hash-check-time",
    "backup-interval",
];

/// The config file named on the command line (`--config-file F`, `--config-file=F`, or
/// Go's single dash) or by `ETCD_CONFIG_FILE`, if any.
pub(crate) fn named(argv: &[String]) -> Option<String> {
    let mut it = argv.iter().skip(1);
    while let Some(arg) = it.next() {
        let body = arg.trim_start_matches('-');
        if body.len() == arg.len() {
            continue;
        }
        if body == FLAG {
            return it.next().cloned();
        }
        if let Some(value) = body.strip_prefix(FLAG).and_then(|r| r.strip_prefix('=')) {
            return Some(value.to_string());
        }
    }
    std::env::var(ENV).ok().filter(|v| !v.is_empty())
}

/// The command line equivalent to the config file at `path` (without the program name).
pub(crate) fn args_from_file(path: &Path) -> Result<Vec<String>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{shown}: {} bytes; a config file is at most {MAX_FILE_BYTES}",
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    args_from_yaml(&text).map_err(|e| format!("error parsing {shown}: {e}"))
}

/// The command line equivalent to the YAML `text`.
pub(crate) fn args_from_yaml(text: &str) -> Result<Vec<String>, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    let mut args = Vec::new();
    let top = match docs.as_slice() {
        [] => return Ok(args),
        [Yaml::Null] => return Ok(args),
        [Yaml::Hash(top)] => top,
        [_] => return Err("the file is not a map of settings".into()),
        _ => return Err("the file holds more than one YAML document".into()),
    };
    for (key, value) in top {
        let key = scalar_key(key)?;
        match key.as_str() {
            "client-transport-security" | "peer-transport-security" => {
                let peer = key.starts_with("peer");
                let Yaml::Hash(inner) = value else {
                    if matches!(value, Yaml::Null) {
                        continue;
                    }
                    return Err(format!("{key}: expected a map"));
                };
                for (k, v) in inner {
                    let k = scalar_key(k)?;
                    match security_flag(peer, &k)? {
                        Some(flag) => push(&mut args, &flag, v)?,
                        None if is_off(v) => {}
                        None => {
                            return Err(format!(
                                "{key}: {k} is not supported by bramble for the client port"
                            ))
                        }
                    }
                }
            }
            FLAG => return Err(format!("{FLAG} cannot be set inside a config file")),
            _ => push(&mut args, &key, value)?,
        }
    }
    Ok(args)
}

/// Whether a setting is unset or off (`null`, `false`, empty text or list).
fn is_off(value: &Yaml) -> bool {
    match value {
        Yaml::Null | Yaml::Boolean(false) => true,
        Yaml::String(s) => s.is_empty(),
        Yaml::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// The flag of one key of etcd's `client-transport-security` or `peer-transport-security`
/// (etcd's `securityConfig`); `None` for a key with no flag, accepted only when off.
fn security_flag(peer: bool, key: &str) -> Result<Option<String>, String> {
    let section = if peer { "peer" } else { "client" };
    let flag = match (peer, key) {
        (false, "cert-file" | "key-file" | "trusted-ca-file" | "auto-tls") => key.to_string(),
        (false, "client-cert-file" | "client-key-file" | "client-cert-auth") => key.to_string(),
        (false, "allowed-hostname") => "client-cert-allowed-hostname".into(),
        (true, "client-cert-file" | "client-key-file") => format!("peer-{key}"),
        (true, "cert-file" | "key-file" | "trusted-ca-file" | "auto-tls") => format!("peer-{key}"),
        (true, "client-cert-auth") => "peer-client-cert-auth".into(),
        (true, "allowed-cn" | "allowed-hostname") => format!("peer-cert-{key}"),
        (true, "skip-client-san-verification") => {
            "experimental-peer-skip-client-san-verification".into()
        }
        (false, "allowed-cn" | "skip-client-san-verification") => return Ok(None),
        _ => return Err(format!("{section}-transport-security: unknown key {key:?}")),
    };
    Ok(Some(flag))
}

fn scalar_key(key: &Yaml) -> Result<String, String> {
    match key {
        Yaml::String(s) => Ok(s.clone()),
        other => Err(format!("a key must be a string, not {other:?}")),
    }
}

/// Appends `--key=value` for one setting (nothing for `null`).
fn push(args: &mut Vec<String>, key: &str, value: &Yaml) -> Result<(), String> {
    if key.is_empty() || key.starts_with('-') || key.contains('=') {
        return Err(format!("{key:?} is not a setting's name"));
    }
    let text = match value {
        Yaml::Null => return Ok(()),
        Yaml::Integer(n) if DURATION_KEYS.contains(&key) => {
            if *n < 0 {
                return Err(format!("{key}: negative duration {n}"));
            }
            format!("{n}ns")
        }
        Yaml::Array(items) => items
            .iter()
            .map(|item| scalar(key, item))
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        other => scalar(key, other)?,
    };
    args.push(format!("--{key}={text}"));
    Ok(())
}

fn scalar(key: &str, value: &Yaml) -> Result<String, String> {
    match value {
        Yaml::String(s) | Yaml::Real(s) => Ok(s.clone()),
        Yaml::Integer(n) => Ok(n.to_string()),
        Yaml::Boolean(b) => Ok(b.to_string()),
        other => Err(format!("{key}: unsupported value {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn transport_security_maps_to_each_ports_flags() {
        let yaml = "
client-transport-security:
  cert-file: /pki/server.crt
  client-cert-auth: true
  allowed-hostname: [a.local]
  allowed-cn:
peer-transport-security:
  cert-file: /pki/peer.crt
  client-cert-auth: true
  trusted-ca-file: /pki/ca.crt
  allowed-cn: [node1, node2]
";
        assert_eq!(
            args_from_yaml(yaml).expect("parses"),
            argv(&[
                "--cert-file=/pki/server.crt",
                "--client-cert-auth=true",
                "--client-cert-allowed-hostname=a.local",
                "--peer-cert-file=/pki/peer.crt",
                "--peer-client-cert-auth=true",
                "--peer-trusted-ca-file=/pki/ca.crt",
                "--peer-cert-allowed-cn=node1,node2",
            ])
        );
        let err = args_from_yaml("client-transport-security:\n  allowed-cn: [x]\n")
            .expect_err("no such client setting");
        assert!(err.contains("not supported by bramble"), "{err}");
        let err =
            args_from_yaml("peer-transport-security:\n  cert-fiel: x\n").expect_err("misspelt");
        assert!(err.contains("unknown key \"cert-fiel\""), "{err}");
    }

    #[test]
    fn etcds_sample_file_becomes_flags() {
        // The shape of etcd's etcd.conf.yml.sample.
        let yaml = "
# This is the configuration file for the etcd server.
name: 'infra1'
data-dir: /var/lib/etcd
snapshot-count: 10000
heartbeat-interval: 100
election-timeout: 1000
quota-backend-bytes: 0
listen-peer-urls: http://localhost:2380
listen-client-urls: http://localhost:2379
max-snapshots: 5
initial-advertise-peer-urls: http://localhost:2380
advertise-client-urls: http://localhost:2379
discovery:
initial-cluster: infra1=http://localhost:2380
initial-cluster-token: 'etcd-cluster'
initial-cluster-state: 'new'
enable-v2: false
enable-pprof: true
client-transport-security:
  cert-file:
  client-cert-auth: false
  auto-tls: false
peer-transport-security:
  client-cert-auth: false
log-level: debug
log-outputs: [stderr]
force-new-cluster: false
grpc-keepalive-interval: 7200000000000
auto-compaction-retention: \"1\"
";
        let args = args_from_yaml(yaml).expect("parses");
        assert_eq!(
            args,
            argv(&[
                "--name=infra1",
                "--data-dir=/var/lib/etcd",
                "--snapshot-count=10000",
                "--heartbeat-interval=100",
                "--election-timeout=1000",
                "--quota-backend-bytes=0",
                "--listen-peer-urls=http://localhost:2380",
                "--listen-client-urls=http://localhost:2379",
                "--max-snapshots=5",
                "--initial-advertise-peer-urls=http://localhost:2380",
                "--advertise-client-urls=http://localhost:2379",
                "--initial-cluster=infra1=http://localhost:2380",
                "--initial-cluster-token=etcd-cluster",
                "--initial-cluster-state=new",
                "--enable-v2=false",
                "--enable-pprof=true",
                "--client-cert-auth=false",
                "--auto-tls=false",
                "--peer-client-cert-auth=false",
                "--log-level=debug",
                "--log-outputs=stderr",
                "--force-new-cluster=false",
                "--grpc-keepalive-interval=7200000000000ns",
                "--auto-compaction-retention=1",
            ])
        );
    }

    #[test]
    fn malformed_files_are_errors() {
        for yaml in [
            "- a list",
            "name: [nested, [list]]",
            "a: 1\n---\nb: 2",
            "client-transport-security: yes-please",
            "config-file: /other.yaml",
            "? [complex]\n: key",
            "grpc-keepalive-interval: -5",
            "\"--name\": x",
            "name: {a: 1}",
            "name: 'unterminated",
        ] {
            assert!(args_from_yaml(yaml).is_err(), "{yaml:?} was accepted");
        }
        assert_eq!(args_from_yaml("").expect("empty"), Vec::<String>::new());
        assert_eq!(args_from_yaml("~").expect("null"), Vec::<String>::new());
    }

    #[test]
    fn the_file_is_found_in_every_spelling() {
        for list in [
            &["bramble", "--config-file", "/a.yaml"][..],
            &["bramble", "--config-file=/a.yaml"],
            &["bramble", "-config-file", "/a.yaml"],
            &["bramble", "--name", "x", "-config-file=/a.yaml"],
        ] {
            assert_eq!(named(&argv(list)).as_deref(), Some("/a.yaml"), "{list:?}");
        }
    }
}
