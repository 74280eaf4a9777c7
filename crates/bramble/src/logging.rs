//! The server's log output: `--log-level` and `--log-format` (etcd 3.6), set up once at start.
//!
//! `console` is tracing's human-readable line. `json` writes one JSON object per line with
//! the field names etcd's zap logger uses (`level`, `ts`, `caller`, `msg`, then the event's
//! own fields), so that log pipelines built for etcd's default output (Loki, Fluent Bit,
//! `jq` in a runbook) read Bramble's without changes.

use std::fmt;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// tracing's human-readable lines (Bramble's default).
    Console,
    /// etcd's zap JSON lines (etcd 3.6's default).
    Json,
}

impl LogFormat {
    /// Reads `--log-format` as etcd 3.6 does.
    pub fn parse(value: &str) -> Result<LogFormat, String> {
        match value {
            "console" => Ok(LogFormat::Console),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format: {other}, supported values json, console"
            )),
        }
    }
}

/// The tracing level filter for etcd's `--log-level` values.
pub fn level_filter(log_level: &str) -> Result<&'static str, String> {
    match log_level {
        "debug" => Ok("debug"),
        "info" => Ok("info"),
        "warn" => Ok("warn"),
        "error" | "panic" | "fatal" | "dpanic" => Ok("error"),
        other => Err(format!(
            "--log-level must be debug, info, warn, error, panic or fatal, not {other:?}"
        )),
    }
}

/// Installs the global subscriber writing to stderr. `BRAMBLE_LOG` (a tracing filter)
/// overrides the level, for debugging one module.
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_env("BRAMBLE_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},openraft=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Console => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.event_format(ZapJson).init(),
    }
}

/// A [`FormatEvent`] writing etcd's zap JSON line.
pub struct ZapJson;

impl<S, N> FormatEvent<S, N> for ZapJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = zap_line(
            *meta.level(),
            chrono::Utc::now(),
            &caller(meta.file(), meta.line()),
            fields,
        );
        writeln!(writer, "{line}")
    }
}

/// One event as etcd's zap encoder writes it: `level`, `ts`, `caller`, `msg` first, then
/// the event's fields in the order given.
fn zap_line(level: Level, now: chrono::DateTime<chrono::Utc>, caller: &str, f: Fields) -> String {
    // etcd's time layout, "2006-01-02T15:04:05.999999Z0700": microseconds, trailing zeros
    // trimmed, Z for UTC.
    let mut ts = now.format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
    while ts.ends_with('0') {
        ts.pop();
    }
    if ts.ends_with('.') {
        ts.pop();
    }
    ts.push('Z');
    // Written pair by pair: serde_json's map would sort the keys, and etcd's order
    // (level, ts, caller, msg, fields as given) is what people read.
    let mut pairs = vec![
        ("level".to_string(), Value::from(zap_level(level))),
        ("ts".to_string(), Value::from(ts)),
        ("caller".to_string(), Value::from(caller)),
        ("msg".to_string(), Value::from(f.message)),
    ];
    pairs.extend(f.rest);
    let body: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(k)))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// zap's lowercase level names (tracing's TRACE has no zap name; debug is closest).
fn zap_level(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG | Level::TRACE => "debug",
    }
}

/// The caller as etcd's short caller (`etcdserver/server.go:2044`), for a Rust source:
/// the crate's directory and the path inside its `src/` (`raft/node/mod.rs:120`), or the
/// file's last directory and name when there is no `src/`.
fn caller(file: Option<&str>, line: Option<u32>) -> String {
    let file = file.unwrap_or("?");
    let short = match file.rfind("/src/") {
        Some(i) => {
            let crate_dir = file[..i].rsplit('/').next().unwrap_or("");
            format!("{crate_dir}/{}", &file[i + "/src/".len()..])
        }
        None => match file.rmatch_indices('/').nth(1) {
            Some((i, _)) => file[i + 1..].to_string(),
            None => file.to_string(),
        },
    };
    match line {
        Some(l) => format!("{short}:{l}"),
        None => short,
    }
}

/// An event's message and fields, in the order they were recorded.
#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(String, Value)>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
        } else {
            self.rest.push((field.name().to_string(), value));
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, Value::from(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::from(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_line_has_etcds_keys_in_etcds_order() {
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 12, 4, 15, 4, 5)
            .single()
            .expect("a valid time")
            + chrono::Duration::microseconds(120_000);
        let fields = Fields {
            message: "published local member to cluster through raft".into(),
            rest: vec![
                ("cluster-id".into(), Value::from("cdf818194e3a8c32")),
                ("index".into(), Value::from(7u64)),
            ],
        };
        let line = zap_line(Level::INFO, now, "bramble/server.rs:42", fields);
        assert_eq!(
            line,
            r#"{"level":"info","ts":"2026-12-04T15:04:05.12Z","caller":"bramble/server.rs:42","msg":"published local member to cluster through raft","cluster-id":"cdf818194e3a8c32","index":7}"#
        );
    }

    #[test]
    fn whole_seconds_have_no_fraction() {
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .single()
            .expect("a valid time");
        let line = zap_line(Level::WARN, now, "x.rs:1", Fields::default());
        assert!(line.contains(r#""ts":"2026-01-02T03:04:05Z""#), "{line}");
        assert!(line.starts_with(r#"{"level":"warn""#), "{line}");
    }

    #[test]
    fn the_caller_is_the_crate_and_its_source_path() {
        assert_eq!(
            caller(Some("crates/raft/src/node/mod.rs"), Some(12)),
            "raft/node/mod.rs:12"
        );
        assert_eq!(
            caller(
                Some("/r/index.crates.io-1/h2-0.4.5/src/proto/mod.rs"),
                Some(7)
            ),
            "h2-0.4.5/proto/mod.rs:7"
        );
        assert_eq!(caller(Some("a/b/c.rs"), Some(1)), "b/c.rs:1");
        assert_eq!(caller(Some("main.rs"), Some(3)), "main.rs:3");
        assert_eq!(caller(None, None), "?");
    }

    #[test]
    fn formats_are_etcds() {
        assert_eq!(LogFormat::parse("json"), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse("console"), Ok(LogFormat::Console));
        let e = LogFormat::parse("text").expect_err("refused");
        assert_eq!(
            e,
            "unknown log format: text, supported values json, console"
        );
        assert_eq!(level_filter("fatal"), Ok("error"));
        assert!(level_filter("loud").is_err());
    }
}
