//! Masking what legitimately differs between two servers' answers, and nothing else.
//!
//! Two independent clusters have different random cluster and member ids, and a raft term
//! that depends on elections rather than on the requests made: these are masked in response
//! headers. Revisions, versions, values, counts and error texts are never masked: they are
//! exactly what Bramble must reproduce.
//!
//! etcdctl's stderr also carries its client library's log lines, with a timestamp, a random
//! client id and the endpoint's port: those are masked too, while the gRPC code and message
//! inside the line stay.

/// Masks the header ids and raft term in etcdctl's `-w json` and `-w fields` output.
pub fn stdout_text(text: &str) -> String {
    let mut s = text.to_string();
    // -w json: {"header":{"cluster_id":N,"member_id":N,"revision":N,"raft_term":N},...}
    for field in ["\"cluster_id\":", "\"member_id\":", "\"raft_term\":"] {
        s = mask_number_after(&s, field);
    }
    // -w fields: one `"Name" : value` per line; with --hex, 3.6 prints the ids in hex.
    for field in ["\"ClusterID\" : ", "\"MemberID\" : ", "\"RaftTerm\" : "] {
        s = mask_after(&s, field, |rest| {
            rest.bytes().take_while(u8::is_ascii_hexdigit).count()
        });
    }
    took(&s)
}

/// Masks the per-run parts of etcdctl's stderr: log timestamps, client ids, the endpoint.
pub fn stderr_text(text: &str, endpoint: &str) -> String {
    let mut s = text.to_string();
    // {"level":"warn","ts":"2026-...Z","caller":"...","msg":"...","target":"endpoint://client-<uuid>/127.0.0.1:PORT",...}
    for field in ["\"ts\":\"", "\"target\":\""] {
        s = mask_string_after(&s, field);
    }
    // etcdctl 3.6's retry lines name the connection: "peer":"Peer{Addr: '...', LocalAddr:
    // '127.0.0.1:PORT', AuthInfo: '...'}"; the client's own port differs per run.
    s = mask_after(&s, "LocalAddr: '", |rest| {
        rest.find('\'').unwrap_or(rest.len())
    });
    self::endpoint(&took(&s), endpoint)
}

/// etcdctl 3.6 reports how long some commands took (`Finished defragmenting etcd
/// member[URL]. took 31.4ms`, also when they fail): the duration is masked.
fn took(text: &str) -> String {
    mask_after(text, ". took ", |rest| {
        let run = rest
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '.' || *c == 'µ'))
            .map_or(rest.len(), |(i, _)| i);
        // The sentence's own full stop is not part of the duration.
        rest[..run].trim_end_matches('.').len()
    })
}

/// Replaces the server's endpoint (which embeds its port) with `<endpoint>`, with or without
/// the URL scheme.
pub fn endpoint(text: &str, endpoint: &str) -> String {
    let host_port = endpoint
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    text.replace(endpoint, "<endpoint>")
        .replace(host_port, "<endpoint>")
}

/// Replaces the run of ASCII digits following each occurrence of `prefix` with `<masked>`.
pub fn mask_number_after(text: &str, prefix: &str) -> String {
    mask_after(text, prefix, |rest| {
        rest.bytes().take_while(u8::is_ascii_digit).count()
    })
}

/// Replaces the rest of a JSON string after `prefix` (which ends with the opening quote) up to
/// its closing quote with `<masked>`.
pub(crate) fn mask_string_after(text: &str, prefix: &str) -> String {
    mask_after(text, prefix, |rest| rest.find('"').unwrap_or(rest.len()))
}

/// Replaces `len(rest)` bytes after each occurrence of `prefix` with `<masked>`.
fn mask_after(text: &str, prefix: &str, len: impl Fn(&str) -> usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let after = at + prefix.len();
        out.push_str(&rest[..after]);
        let n = len(&rest[after..]);
        if n > 0 {
            out.push_str("<masked>");
        }
        rest = &rest[after + n..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_json_header_ids_but_not_revision() {
        let json =
            r#"{"header":{"cluster_id":981,"member_id":933,"revision":3,"raft_term":2},"count":1}"#;
        assert_eq!(
            stdout_text(json),
            r#"{"header":{"cluster_id":<masked>,"member_id":<masked>,"revision":3,"raft_term":<masked>},"count":1}"#
        );
    }

    #[test]
    fn masks_fields_header_ids() {
        let fields = "\"ClusterID\" : 98\n\"MemberID\" : 93\n\"Revision\" : 3\n\"RaftTerm\" : 2\n";
        assert_eq!(
            stdout_text(fields),
            "\"ClusterID\" : <masked>\n\"MemberID\" : <masked>\n\"Revision\" : 3\n\"RaftTerm\" : <masked>\n"
        );
    }

    #[test]
    fn masks_log_line_but_keeps_error() {
        let line = r#"{"level":"warn","ts":"2026-11-22T00:10:38.135Z","target":"endpoint://client-bb28/127.0.0.1:22379","error":"rpc error: code = InvalidArgument desc = etcdserver: key is not provided"}
Error: etcdserver: key is not provided at 127.0.0.1:22379"#;
        assert_eq!(
            stderr_text(line, "http://127.0.0.1:22379"),
            r#"{"level":"warn","ts":"<masked>","target":"<masked>","error":"rpc error: code = InvalidArgument desc = etcdserver: key is not provided"}
Error: etcdserver: key is not provided at <endpoint>"#
        );
    }

    #[test]
    fn masks_the_clients_local_address_in_3_6_retry_lines() {
        let line = r#""peer":"Peer{Addr: '127.0.0.1:22379', LocalAddr: '127.0.0.1:45558', AuthInfo: 'tls'}","#;
        assert_eq!(
            stderr_text(line, "http://127.0.0.1:22379"),
            r#""peer":"Peer{Addr: '<endpoint>', LocalAddr: '<masked>', AuthInfo: 'tls'}","#
        );
    }

    #[test]
    fn masks_how_long_a_command_took() {
        let line = "Failed to defragment etcd member[x]. took 2.509347ms. (etcdserver: permission denied)\nFinished defragmenting etcd member[y]. took 31µs\n";
        assert_eq!(
            took(line),
            "Failed to defragment etcd member[x]. took <masked>. (etcdserver: permission denied)\nFinished defragmenting etcd member[y]. took <masked>\n"
        );
    }
}
