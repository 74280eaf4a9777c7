//! `--log-format json`: every line a server writes is one JSON object with zap's keys in
//! zap's order (`level`, `ts`, `caller`, `msg`, then fields), as etcd writes its log
//! (etcd 3.4 with `--logger=zap`, the JSON it writes by default from 3.5 on), so log
//! pipelines built for etcd read Bramble's. An unknown format is refused with etcd 3.6's
//! error before anything is created.

use std::process::{Command, Stdio};

use bramble_tests::server::ServerConfig;
use bramble_tests::target::differential_targets;
use bramble_tests::tools::bramble_bin;
use bramble_tests::{client, Kind, Server};
use serde_json::Value;

/// The keys zap writes first, in its order (a named logger's `logger` key, such as etcd
/// 3.6's `bbolt`, comes between `ts` and `caller`: left out before comparing).
const ZAP_KEYS: [&str; 4] = ["level", "ts", "caller", "msg"];

/// The keys of a JSON object in the order they appear in `line` (serde_json's map sorts
/// them, so they are found by position in the text).
fn key_order(line: &str, object: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut keys: Vec<(usize, String)> = object
        .keys()
        .map(|k| {
            let quoted = format!("{}:", Value::from(k.as_str()));
            (line.find(&quoted).unwrap_or(usize::MAX), k.clone())
        })
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}

#[test]
fn json_lines_with_zaps_keys() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for kind in differential_targets() {
        let flag = match kind {
            Kind::Etcd => "--logger=zap",
            Kind::Bramble => "--log-format=json",
        };
        let config = ServerConfig {
            extra_args: vec![flag.to_string()],
            ..Default::default()
        };
        let server = Server::start_with(kind, config);
        runtime.block_on(async {
            let mut c = client::connect(&server).await;
            c.put("k", "v", None).await.expect("put");
        });
        let log = server.log();
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(lines.len() >= 3, "{kind}: too few log lines:\n{log}");
        for line in &lines {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{kind}: not a JSON line ({e}): {line}"));
            let object = value
                .as_object()
                .unwrap_or_else(|| panic!("{kind}: not an object: {line}"));
            let mut order = key_order(line, object);
            if order.get(2).map(String::as_str) == Some("logger") {
                order.remove(2);
            }
            assert_eq!(order[..4], ZAP_KEYS, "{kind}: key order of {line}");
            let level = object["level"].as_str().expect("level is a string");
            assert!(
                ["debug", "info", "warn", "error"].contains(&level),
                "{kind}: level {level}"
            );
            let ts = object["ts"].as_str().expect("ts is a string");
            assert!(
                ts.len() >= 20 && ts.as_bytes()[10] == b'T' && ts.ends_with('Z'),
                "{kind}: ts {ts}"
            );
            let caller = object["caller"].as_str().expect("caller is a string");
            assert!(
                caller.contains(".") && caller.contains(':'),
                "{kind}: caller {caller}"
            );
            assert!(object["msg"].is_string(), "{kind}: msg of {line}");
        }
    }
}

#[test]
fn an_unknown_format_is_refused() {
    let dir = bramble_testkit::temp::dir("bramble-log-format-");
    let data = dir.path().join("data");
    let out = Command::new(bramble_bin())
        .arg("--data-dir")
        .arg(&data)
        .arg("--log-format=text")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run bramble");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown log format: text, supported values json, console"),
        "{stderr}"
    );
    assert!(!data.exists(), "the data dir was created");
}
