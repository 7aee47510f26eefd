//! Compact re-encoding of producer JSON, keeping the producer's key order and
//! number spelling (what the receiver's `JSON.stringify` check relies on).

/// Validates that `input` is one JSON object and returns it without
/// insignificant whitespace. Errors carry serde_json's description.
pub fn minify_json_object(input: &[u8]) -> Result<String, String> {
    let raw: &serde_json::value::RawValue =
        serde_json::from_slice(input).map_err(|e| e.to_string())?;
    let text = raw.get();
    if !text.starts_with('{') {
        return Err("must be a JSON object".to_owned());
    }
    // The text is valid JSON, so whitespace outside strings is insignificant and
    // every string is delimited by unescaped quotes.
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for ch in text.chars() {
        if in_string {
            out.push(ch);
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_string = false;
            }
        } else if ch == '"' {
            in_string = true;
            out.push(ch);
        } else if !matches!(ch, ' ' | '\n' | '\r' | '\t') {
            out.push(ch);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_whitespace_outside_strings_only() {
        let got = minify_json_object(br#" { "b" : 1.50 , "a" : [ 1 , "x y\" z" ] , "c":{ } } "#);
        assert_eq!(got.as_deref(), Ok(r#"{"b":1.50,"a":[1,"x y\" z"],"c":{}}"#));
    }

    #[test]
    fn keeps_escapes_and_unicode() {
        let got = minify_json_object("{\"k\": \"caf\\u00e9 ☕ \\\\\"}".as_bytes());
        assert_eq!(got.as_deref(), Ok("{\"k\":\"caf\\u00e9 ☕ \\\\\"}"));
    }

    #[test]
    fn rejects_non_objects_and_garbage() {
        assert!(minify_json_object(b"[1,2]").is_err());
        assert!(minify_json_object(b"\"s\"").is_err());
        assert!(minify_json_object(b"{").is_err());
        assert!(minify_json_object(b"{} {}").is_err());
        assert!(minify_json_object(&[0xff, 0xfe]).is_err());
        assert!(minify_json_object(b"").is_err());
    }
}
