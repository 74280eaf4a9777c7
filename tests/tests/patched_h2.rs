//! Regression test for Bramble's patch of h2 0.4.20 (third_party/h2.patch, see
//! third_party/README.md): an HTTP/2 server accepts an absolute `http://host:port` URL as
//! `:authority`, as grpc-go before etcd 3.5 (etcdctl 3.4's `endpoint status`) sends it and Go's
//! server accepts it. Upstream resets such a stream with PROTOCOL_ERROR. The end-to-end
//! counterpart is `endpoint_status_and_health` in etcdctl_kv.rs.
//!
//! The client side is written frame by frame, since h2's own client always sends a plain
//! authority.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// The client connection preface (RFC 9113 section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADERS: u8 = 0x1;
const FRAME_SETTINGS: u8 = 0x4;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;

/// One frame: 24-bit length, type, flags, stream id (RFC 9113 section 4.1).
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a small frame");
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// An HPACK header block of literal fields without indexing, new names, no Huffman coding
/// (RFC 7541 section 6.2.2); every name and value is shorter than 127 bytes.
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        for s in [name, value] {
            out.push(u8::try_from(s.len()).expect("a short string") & 0x7f);
            out.extend(s.as_bytes());
        }
    }
    out
}

#[tokio::test]
async fn an_absolute_url_authority_is_accepted() {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(FRAME_SETTINGS, 0, 0, &[]));
    let block = header_block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/etcdserverpb.Maintenance/Status"),
        (":authority", "http://127.0.0.1:2379"),
    ]);
    bytes.extend(frame(
        FRAME_HEADERS,
        FLAG_END_STREAM | FLAG_END_HEADERS,
        1,
        &block,
    ));
    client.write_all(&bytes).await.expect("write the request");

    let accepted = tokio::time::timeout(Duration::from_secs(5), async {
        let mut connection = h2::server::handshake(server).await.expect("handshake");
        connection.accept().await
    })
    .await
    .expect("the server accepts the stream rather than resetting it")
    .expect("a stream")
    .expect("a well-formed request");
    let (request, _respond) = accepted;
    assert_eq!(
        request.uri().authority().map(|a| a.as_str()),
        Some("127.0.0.1:2379")
    );
    assert_eq!(request.uri().path(), "/etcdserverpb.Maintenance/Status");
    drop(client);
}
