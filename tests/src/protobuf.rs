//! A minimal protobuf wire-format reader, so etcdctl's `-w protobuf` output can be compared.
//!
//! `-w protobuf` prints the response message as binary. Its header (field 1 of every etcd
//! response) holds the cluster id, member id and raft term, which differ between any two
//! clusters, so the message is rendered as one text line per top-level field with those three
//! header fields masked. Every other byte is shown (as hex) and compared.

use std::fmt::Write;

/// Renders an etcd response message as text with `header.cluster_id`, `header.member_id` and
/// `header.raft_term` masked. Bytes that do not parse as protobuf are rendered as an error
/// plus hex, so a malformed answer still shows up as a difference rather than a panic.
pub(crate) fn render_response(bytes: &[u8]) -> String {
    match fields(bytes) {
        Ok(fields) => {
            let mut out = String::new();
            for field in fields {
                let line = match (&field.number, &field.value) {
                    (1, Value::Bytes(header)) => format!("1: header {{{}}}", render_header(header)),
                    _ => field.to_string(),
                };
                let _ = writeln!(out, "{line}");
            }
            out
        }
        Err(e) => format!("[not protobuf: {e}] {}\n", hex(bytes)),
    }
}

/// Renders a ResponseHeader with its per-cluster fields (1, 2, 4) masked.
fn render_header(bytes: &[u8]) -> String {
    match fields(bytes) {
        Ok(fields) => fields
            .iter()
            .map(|f| match f.number {
                1 | 2 | 4 => format!("{}: <masked>", f.number),
                _ => f.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => format!("[not protobuf: {e}] {}", hex(bytes)),
    }
}

/// One field as it appears on the wire.
#[derive(Debug)]
struct Field {
    number: u64,
    value: Value,
}

/// A field's value by wire type; length-delimited values are kept as raw bytes.
#[derive(Debug)]
enum Value {
    Varint(u64),
    Fixed64(u64),
    Bytes(Vec<u8>),
    Fixed32(u32),
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Value::Varint(v) => write!(f, "{}: varint {v}", self.number),
            Value::Fixed64(v) => write!(f, "{}: fixed64 {v}", self.number),
            Value::Fixed32(v) => write!(f, "{}: fixed32 {v}", self.number),
            Value::Bytes(b) => write!(f, "{}: bytes[{}] {}", self.number, b.len(), hex(b)),
        }
    }
}

/// Splits a message into its fields, in wire order.
fn fields(mut bytes: &[u8]) -> Result<Vec<Field>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let number = key >> 3;
        let value = match key & 7 {
            0 => Value::Varint(varint(&mut bytes)?),
            1 => Value::Fixed64(u64::from_le_bytes(
                take(&mut bytes, 8)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let len =
                    usize::try_from(varint(&mut bytes)?).map_err(|_| "length overflows usize")?;
                Value::Bytes(take(&mut bytes, len)?.to_vec())
            }
            5 => Value::Fixed32(u32::from_le_bytes(
                take(&mut bytes, 4)?.try_into().expect("4 bytes"),
            )),
            t => return Err(format!("unsupported wire type {t} for field {number}")),
        };
        out.push(Field { number, value });
    }
    Ok(out)
}

/// Reads a base-128 varint.
fn varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first().ok_or("truncated varint")?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".to_string())
}

/// Takes `n` bytes off the front.
fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if bytes.len() < n {
        return Err(format!("field needs {n} bytes, {} left", bytes.len()));
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_header_ids_keeps_revision_and_body() {
        // A RangeResponse from etcd 3.4: header{cluster_id, member_id, revision: 3, raft_term: 2},
        // kvs[{key: "a", create_revision: 2, mod_revision: 3, version: 2, value: "2"}], count: 1.
        let bytes = [
            0x0a, 0x1a, 0x08, 0xf9, 0xf4, 0xdf, 0xad, 0xb4, 0x95, 0x84, 0x9b, 0x88, 0x01, 0x10,
            0xcf, 0xe0, 0xb5, 0x9b, 0xd5, 0x94, 0x94, 0xca, 0x81, 0x01, 0x18, 0x03, 0x20, 0x02,
            0x12, 0x0c, 0x0a, 0x01, 0x61, 0x10, 0x02, 0x18, 0x03, 0x20, 0x02, 0x2a, 0x01, 0x32,
            0x20, 0x01,
        ];
        assert_eq!(
            render_response(&bytes),
            "1: header {1: <masked>, 2: <masked>, 3: varint 3, 4: <masked>}\n\
             2: bytes[12] 0a01611002180320022a0132\n\
             4: varint 1\n"
        );
    }

    #[test]
    fn garbage_is_reported_not_panicked() {
        assert!(render_response(&[0x0a, 0x05, 0x01]).starts_with("[not protobuf"));
    }
}
