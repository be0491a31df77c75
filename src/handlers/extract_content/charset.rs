//! A page's bytes → text. Pages still come in legacy encodings (Shift_JIS and EUC-JP in
//! Japan, GBK, windows-1251…), and a wrong guess turns the article into mojibake that
//! no later step can repair. The order follows the HTML standard's encoding sniffing:
//! a byte-order mark, then the Content-Type header's charset, then a `<meta charset>`
//! or `http-equiv` declaration near the top, else UTF-8.

use encoding_rs::{Encoding, UTF_8, UTF_16BE, UTF_16LE, WINDOWS_1252, X_USER_DEFINED};

/// How far into the page a `<meta>` declaration is looked for (the standard says
/// 1024 bytes; real pages put comments and scripts first, so a little more).
const PRESCAN_BYTES: usize = 4096;

/// Decodes `bytes`, served with `content_type` (the header's value, if any). Invalid
/// sequences become U+FFFD rather than failing the job.
pub fn decode(bytes: &[u8], content_type: Option<&str>) -> String {
    let (text, _, _) = sniff(bytes, content_type).decode(bytes);
    text.into_owned()
}

/// The encoding `decode` uses (a BOM, if present, still wins when decoding).
pub fn sniff(bytes: &[u8], content_type: Option<&str>) -> &'static Encoding {
    if let Some((bom, _)) = Encoding::for_bom(bytes) {
        return bom;
    }
    content_type
        .and_then(header_charset)
        .or_else(|| meta_charset(&bytes[..bytes.len().min(PRESCAN_BYTES)]))
        .unwrap_or(UTF_8)
}

/// The `charset` parameter of a Content-Type value.
fn header_charset(content_type: &str) -> Option<&'static Encoding> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| Encoding::for_label(value.trim().trim_matches(['"', '\'']).as_bytes()))
            .flatten()
    })
}

/// The charset named by the first `<meta>` that names one (`<meta charset="…">` or
/// `<meta http-equiv="Content-Type" content="…; charset=…">`).
fn meta_charset(head: &[u8]) -> Option<&'static Encoding> {
    let lower = head.to_ascii_lowercase();
    let mut rest = lower.as_slice();
    while let Some(at) = find(rest, b"<meta") {
        let tag = &rest[at + 5..];
        let end = find(tag, b">").unwrap_or(tag.len());
        if let Some(enc) = charset_attr(&tag[..end]) {
            return Some(as_meta_declared(enc));
        }
        rest = &tag[end..];
    }
    None
}

/// The value after `charset` `=` inside a tag's text, quoted or not.
fn charset_attr(tag: &[u8]) -> Option<&'static Encoding> {
    let at = find(tag, b"charset")?;
    let after = tag[at + 7..].trim_ascii_start();
    let value = after.strip_prefix(b"=")?.trim_ascii_start();
    let value = value
        .strip_prefix(b"\"")
        .or_else(|| value.strip_prefix(b"'"))
        .unwrap_or(value);
    let len = value
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.')))
        .unwrap_or(value.len());
    Encoding::for_label(&value[..len])
}

/// A `<meta>` cannot declare UTF-16 (the bytes it was read in are ASCII-compatible),
/// and `x-user-defined` means windows-1252 there (HTML standard, "prescan").
fn as_meta_declared(enc: &'static Encoding) -> &'static Encoding {
    if enc == UTF_16LE || enc == UTF_16BE {
        UTF_8
    } else if enc == X_USER_DEFINED {
        WINDOWS_1252
    } else {
        enc
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoding_rs::{EUC_JP, SHIFT_JIS};

    const JA: &str = "肉をくわえたイヌが、橋を渡っていました。";

    fn page(charset_meta: &str, body: &str) -> String {
        format!(
            "<html><head>{charset_meta}<title>t</title></head><body><p>{body}</p></body></html>"
        )
    }

    #[test]
    fn header_charset_wins_over_meta() {
        let html = page(r#"<meta charset="utf-8">"#, JA);
        let (bytes, _, bad) = EUC_JP.encode(&html);
        assert!(!bad);
        let text = decode(&bytes, Some("text/html; charset=EUC-JP"));
        assert!(text.contains(JA), "{text}");
        assert_eq!(sniff(&bytes, Some("text/html; charset=\"euc-jp\"")), EUC_JP);
    }

    #[test]
    fn meta_declarations_are_found() {
        for meta in [
            r#"<meta charset="Shift_JIS">"#,
            "<meta charset=shift_jis>",
            r#"<META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=Shift_JIS">"#,
            r#"<meta content='text/html; charset=sjis' http-equiv='content-type'/>"#,
        ] {
            let html = page(meta, JA);
            let (bytes, _, bad) = SHIFT_JIS.encode(&html);
            assert!(!bad);
            assert_eq!(sniff(&bytes, Some("text/html")), SHIFT_JIS, "{meta}");
            assert!(decode(&bytes, None).contains(JA), "{meta}");
        }
    }

    #[test]
    fn defaults_and_oddities() {
        let html = page("", JA);
        assert_eq!(sniff(html.as_bytes(), None), UTF_8);
        assert!(decode(html.as_bytes(), Some("text/html")).contains(JA));
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice(html.as_bytes());
        assert_eq!(sniff(&bom, Some("text/html; charset=iso-8859-1")), UTF_8);
        assert!(!decode(&bom, None).starts_with('\u{feff}'));
        let utf16 = page(r#"<meta charset="utf-16">"#, "x");
        assert_eq!(sniff(utf16.as_bytes(), None), UTF_8);
        let unknown = page(r#"<meta charset="klingon">"#, "x");
        assert_eq!(sniff(unknown.as_bytes(), None), UTF_8);
        assert_eq!(
            sniff(b"caf\xe9", Some("text/html; charset=latin1")),
            WINDOWS_1252
        );
        assert_eq!(
            decode(b"caf\xe9", Some("text/html; charset=latin1")),
            "café"
        );
    }
}
