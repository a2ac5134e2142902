//! Kafka's zigzag variable-length integers, as used inside v2 records.

/// Appends `value` as a zigzag varint (Kafka's `varint` and `varlong` share the encoding).
pub fn put_varlong(buf: &mut Vec<u8>, value: i64) {
    // Zigzag: the sign bit moves to bit 0; the casts reinterpret bits, they do not truncate.
    let mut bits = ((value << 1) ^ (value >> 63)).cast_unsigned();
    while bits >= 0x80 {
        buf.push(u8::try_from(bits & 0x7f).expect("masked to 7 bits") | 0x80);
        bits >>= 7;
    }
    buf.push(u8::try_from(bits).expect("below 0x80"));
}

/// Reads a zigzag varint of at most `max_bytes` bytes from the front of `buf`.
///
/// Returns the value and the bytes consumed, or `None` when the buffer ends first or the
/// encoding is longer than `max_bytes` (5 for a Kafka varint, 10 for a varlong).
pub fn get_varlong(buf: &[u8], max_bytes: usize) -> Option<(i64, usize)> {
    let mut bits: u64 = 0;
    for (index, byte) in buf.iter().take(max_bytes).enumerate() {
        bits |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            let value = (bits >> 1).cast_signed() ^ -((bits & 1).cast_signed());
            return Some((value, index + 1));
        }
    }
    None
}

/// Reads a Kafka `varint` (32-bit, at most 5 bytes).
pub fn get_varint(buf: &[u8]) -> Option<(i32, usize)> {
    let (value, len) = get_varlong(buf, 5)?;
    Some((i32::try_from(value).ok()?, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: i64, encoded: &[u8]) {
        let mut buf = Vec::new();
        put_varlong(&mut buf, value);
        assert_eq!(buf, encoded, "encoding {value}");
        assert_eq!(get_varlong(&buf, 10), Some((value, encoded.len())));
    }

    #[test]
    fn zigzag_encodings_match_kafka() {
        check(0, &[0x00]);
        check(-1, &[0x01]);
        check(1, &[0x02]);
        check(63, &[0x7e]);
        check(-64, &[0x7f]);
        check(64, &[0x80, 0x01]);
        check(300, &[0xd8, 0x04]);
        check(
            i64::MAX,
            &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        );
        check(
            i64::MIN,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        );
    }

    #[test]
    fn truncated_or_overlong_encodings_are_refused() {
        assert_eq!(get_varlong(&[0x80], 10), None);
        assert_eq!(get_varlong(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], 5), None);
        assert_eq!(get_varint(&[0xfe, 0xff, 0xff, 0xff, 0x7f]), None);
        assert_eq!(get_varint(&[0x02]), Some((1, 1)));
    }
}
