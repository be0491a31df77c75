//! Page cursors: opaque to clients and checked on the way back in. A cursor carries the
//! last job id of a page and a checksum over it, so a cursor that was edited or made up
//! is a 400 (`invalid_cursor`) instead of a silently different page. It is not a secret:
//! listing is scoped by owner whatever the cursor says.

use sha2::{Digest, Sha256};
use uuid::Uuid;

const PREFIX: &str = "c1_";

fn check(id: &Uuid) -> String {
    let d = Sha256::new()
        .chain_update(b"kyu page cursor v1")
        .chain_update(id.as_bytes())
        .finalize();
    d[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// The cursor for the page after `id`.
pub fn encode(id: Uuid) -> String {
    format!("{PREFIX}{}{}", id.simple(), check(&id))
}

/// The id in a cursor this API handed out; `None` for anything else.
pub fn decode(cursor: &str) -> Option<Uuid> {
    let rest = cursor.strip_prefix(PREFIX)?;
    if rest.len() != 32 + 12 || !rest.is_ascii() {
        return None;
    }
    let (id, sum) = rest.split_at(32);
    let id = Uuid::try_parse(id).ok()?;
    (check(&id) == sum).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_edits() {
        let id = Uuid::now_v7();
        let c = encode(id);
        assert_eq!(decode(&c), Some(id));
        // Change one character anywhere after the prefix: refused.
        for i in PREFIX.len()..c.len() {
            let mut b = c.clone().into_bytes();
            b[i] = if b[i] == b'0' { b'1' } else { b'0' };
            let edited = String::from_utf8(b).expect("ascii");
            assert_eq!(decode(&edited), None, "accepted {edited}");
        }
        assert_eq!(decode(&id.to_string()), None);
        assert_eq!(decode(""), None);
        assert_eq!(decode("c1_é"), None);
    }
}
