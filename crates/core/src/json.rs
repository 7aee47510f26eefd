//! The canonical form of producer JSON: exactly what ECMAScript's
//! `JSON.stringify(JSON.parse(text))` writes, so that a receiver that checks
//! the in-body signature by re-serialising the parsed payload (the vendor's
//! Node snippet does) computes the very bytes that were signed.
//!
//! That form puts integer-like keys ("array indices", canonical decimal
//! integers below 2^32 − 1) first in ascending order, keeps the other keys in
//! the producer's order, writes numbers in their shortest round-trip form
//! (`1.50` → `1.5`, `1E2` → `100`, `-0` → `0`, `1e21` → `1e+21`) and escapes
//! in strings only `"`, `\` and control characters (`\u00e9`, `\/` and
//! `\u2028` are written as the characters they stand for).
//!
//! Input that `JSON.parse` would read differently from other parsers, or not
//! at all, is refused: duplicate keys, numbers outside IEEE-754 doubles,
//! integer literals beyond ±2^53 that a double cannot hold exactly, lone
//! surrogates, and nesting deeper than [`MAX_DEPTH`].
//!
//! Hand-written rather than through `serde_json`: serde_json keeps the last of
//! duplicate keys silently and hands numbers over already converted, so the
//! literal's form (an integer beyond 2^53, say) is lost; this parser sees
//! every byte once and writes the canonical form as it goes.

use std::fmt::Write as _;

/// Deepest nesting of objects and arrays accepted (the outer object is 1).
pub(crate) const MAX_DEPTH: usize = 64;

/// Largest integer magnitude a double holds exactly (2^53).
const MAX_SAFE: u64 = 1 << 53;

/// Validates that `input` is one JSON object and returns its canonical form.
pub fn canonical_json_object(input: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(input).map_err(|_| "is not valid UTF-8".to_owned())?;
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        at: 0,
        out: String::with_capacity(text.len()),
    };
    p.ws();
    if p.peek() != Some(b'{') {
        return Err("must be a JSON object".to_owned());
    }
    p.value(1)?;
    p.ws();
    if p.at != p.s.len() {
        return Err(p.error("trailing characters after the object"));
    }
    Ok(p.out)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    at: usize,
    out: String,
}

/// A member written to the output: where it starts and whether its key is
/// an array index (and which).
struct Member {
    start: usize,
    index: Option<u32>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.at)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.peek() == Some(b) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", b as char)))
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), String> {
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => {
                let s = self.string()?;
                quote(&s, &mut self.out);
                Ok(())
            }
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error("expected a JSON value")),
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), String> {
        if self.s[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            self.out.push_str(word);
            Ok(())
        } else {
            Err(self.error("expected a JSON value"))
        }
    }

    fn nested(&self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            Err(self.error(&format!("nested deeper than {MAX_DEPTH}")))
        } else {
            Ok(())
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), String> {
        self.nested(depth)?;
        self.expect(b'[')?;
        self.out.push('[');
        self.ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            self.out.push(']');
            return Ok(());
        }
        loop {
            self.ws();
            self.value(depth + 1)?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    self.out.push(',');
                }
                Some(b']') => {
                    self.at += 1;
                    self.out.push(']');
                    return Ok(());
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), String> {
        self.nested(depth)?;
        self.expect(b'{')?;
        let open = self.out.len();
        self.out.push('{');
        self.ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            self.out.push('}');
            return Ok(());
        }
        let mut members: Vec<Member> = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a key"));
            }
            let key = self.string()?;
            // Small objects compare linearly; large ones use a set.
            let duplicate = if keys.len() < 16 {
                keys.contains(&key)
            } else {
                if seen.is_empty() {
                    seen.extend(keys.iter().cloned());
                }
                !seen.insert(key.clone())
            };
            if duplicate {
                return Err(format!("duplicate key {key:?}"));
            }
            let start = self.out.len();
            members.push(Member {
                start,
                index: array_index(&key),
            });
            quote(&key, &mut self.out);
            keys.push(key);
            self.ws();
            self.expect(b':')?;
            self.out.push(':');
            self.ws();
            self.value(depth + 1)?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    self.out.push(',');
                }
                Some(b'}') => {
                    self.at += 1;
                    break;
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
        if members.iter().any(|m| m.index.is_some()) {
            self.reorder(open + 1, &members);
        }
        self.out.push('}');
        Ok(())
    }

    /// Rewrites the members written since `from` (each followed by a comma
    /// but the last): array-index keys first, ascending, then the others in
    /// their order.
    fn reorder(&mut self, from: usize, members: &[Member]) {
        let end = self.out.len();
        let text = self.out[from..end].to_owned();
        let span = |i: usize| {
            let a = members[i].start - from;
            let b = members
                .get(i + 1)
                .map_or(end - from, |m| m.start - from - 1);
            &text[a..b]
        };
        let mut order: Vec<usize> = (0..members.len()).collect();
        // Stable: non-index members keep their relative order.
        order.sort_by_key(|&i| match members[i].index {
            Some(n) => (0, n),
            None => (1, 0),
        });
        self.out.truncate(from);
        for (k, &i) in order.iter().enumerate() {
            if k > 0 {
                self.out.push(',');
            }
            self.out.push_str(span(i));
        }
    }

    /// Reads a string token, returning its decoded value.
    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let start = self.at;
        // Fast path: no escapes.
        while let Some(b) = self.peek() {
            match b {
                b'"' => {
                    let s = self.text[start..self.at].to_owned();
                    self.at += 1;
                    return Ok(s);
                }
                b'\\' => break,
                0x00..=0x1f => return Err(self.error("control character in a string")),
                _ => self.at += 1,
            }
        }
        let mut s = self.text[start..self.at].to_owned();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error("unterminated string"));
            };
            match b {
                b'"' => {
                    self.at += 1;
                    return Ok(s);
                }
                b'\\' => {
                    self.at += 1;
                    let esc = self
                        .peek()
                        .ok_or_else(|| self.error("unterminated string"))?;
                    self.at += 1;
                    match esc {
                        b'"' => s.push('"'),
                        b'\\' => s.push('\\'),
                        b'/' => s.push('/'),
                        b'b' => s.push('\u{8}'),
                        b'f' => s.push('\u{c}'),
                        b'n' => s.push('\n'),
                        b'r' => s.push('\r'),
                        b't' => s.push('\t'),
                        b'u' => s.push(self.unicode_escape()?),
                        _ => return Err(self.error("invalid escape")),
                    }
                }
                0x00..=0x1f => return Err(self.error("control character in a string")),
                _ => {
                    // Copy one UTF-8 character.
                    let ch_len = utf8_len(b);
                    s.push_str(&self.text[self.at..self.at + ch_len]);
                    self.at += ch_len;
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .s
            .get(self.at..self.at + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error("invalid \\u escape"))?;
        let v = u32::from_str_radix(digits, 16).map_err(|_| self.error("invalid \\u escape"))?;
        self.at += 4;
        Ok(v)
    }

    /// After `\u`: one character, pairing surrogates; a lone one is refused.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let hi = self.hex4()?;
        let code = match hi {
            0xd800..=0xdbff => {
                if !self.s[self.at..].starts_with(b"\\u") {
                    return Err(self.error("lone surrogate in a \\u escape"));
                }
                self.at += 2;
                let lo = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&lo) {
                    return Err(self.error("lone surrogate in a \\u escape"));
                }
                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(self.error("lone surrogate in a \\u escape")),
            v => v,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))
    }

    fn number(&mut self) -> Result<(), String> {
        let start = self.at;
        let digits = |p: &mut Self| {
            let from = p.at;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.at += 1;
            }
            p.at - from
        };
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let int_start = self.at;
        let n = digits(self);
        if n == 0 || (n > 1 && self.s[int_start] == b'0') {
            return Err(self.error("invalid number"));
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            integer = false;
            if digits(self) == 0 {
                return Err(self.error("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            integer = false;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if digits(self) == 0 {
                return Err(self.error("invalid number"));
            }
        }
        let literal = &self.text[start..self.at];
        let value: f64 = literal.parse().map_err(|_| self.error("invalid number"))?;
        if !value.is_finite() {
            return Err(format!(
                "number {literal} is outside the range of IEEE-754 doubles"
            ));
        }
        let at = self.out.len();
        write_number(value, &mut self.out);
        // An integer beyond ±2^53 that a double cannot hold exactly would
        // reach the receiver as another integer: refused. (One a double
        // holds, as this writer prints it, passes: the form is a fixed point.)
        if integer {
            let magnitude = &self.text[int_start..self.at];
            let beyond =
                magnitude.len() >= 16 && magnitude.parse::<u64>().map_or(true, |v| v > MAX_SAFE);
            if beyond && self.out[at..].trim_start_matches('-') != magnitude {
                return Err(format!(
                    "integer {literal} is beyond ±2^53 and would change in transit; send it as a string"
                ));
            }
        }
        Ok(())
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// An ECMAScript array index: the canonical decimal form of an integer in
/// `0..2^32 - 1`.
fn array_index(key: &str) -> Option<u32> {
    if key.is_empty() || key.len() > 10 || (key.len() > 1 && key.starts_with('0')) {
        return None;
    }
    if !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse::<u64>()
        .ok()
        .filter(|&n| n < u64::from(u32::MAX))
        .map(|n| n as u32)
}

/// `JSON.stringify` of a string: quotes, with `"`, `\` and control
/// characters escaped, everything else as is.
fn quote(s: &str, out: &mut String) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// ECMAScript `Number::toString` of a finite double (the shortest digits
/// that round-trip, placed as the specification says).
fn write_number(v: f64, out: &mut String) {
    if v == 0.0 {
        out.push('0');
        return;
    }
    // Rust's `{:e}` prints the shortest round-trip digits: `d[.ddd]e<exp>`.
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exp: i64 = exp.parse().unwrap_or(0);
    let k = digits.len() as i64;
    let n = exp + 1;
    if v < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = n - 1;
        let _ = write!(out, "e{}{}", if e < 0 { '-' } else { '+' }, e.abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> Result<String, String> {
        canonical_json_object(s.as_bytes())
    }

    /// Expected values written by Node's `JSON.stringify(JSON.parse(input))`.
    #[test]
    fn matches_json_stringify() {
        for (input, expected) in [
            (
                r#" { "b" : 1.50 , "a" : [ 1 , "x y\" z" ] , "c":{ } } "#,
                r#"{"b":1.5,"a":[1,"x y\" z"],"c":{}}"#,
            ),
            (r#"{"s":"Ol\u00e1"}"#, r#"{"s":"Olá"}"#),
            (r#"{"s":"\u003c\u0026"}"#, r#"{"s":"<&"}"#),
            (
                r#"{"u":"https:\/\/example.com"}"#,
                r#"{"u":"https://example.com"}"#,
            ),
            (
                r#"{"n":1E2,"m":-0,"x":0.000001,"y":1e-7,"z":1e21,"w":1.2345678901234568e20}"#,
                r#"{"n":100,"m":0,"x":0.000001,"y":1e-7,"z":1e+21,"w":123456789012345680000}"#,
            ),
            (
                r#"{"b":1,"10":3,"2":2,"a":0,"01":4,"4294967295":5,"4294967294":6}"#,
                r#"{"2":2,"10":3,"4294967294":6,"b":1,"a":0,"01":4,"4294967295":5}"#,
            ),
            ("{\"l\":\"\\u2028\"}", "{\"l\":\"\u{2028}\"}"),
            (
                r#"{"c":"\u0001\b\f\n\r\t\u001f\u007f"}"#,
                "{\"c\":\"\\u0001\\b\\f\\n\\r\\t\\u001f\u{7f}\"}",
            ),
            (r#"{"e":"\ud83d\ude00"}"#, "{\"e\":\"😀\"}"),
            (
                r#"{"big":9007199254740992,"neg":-9007199254740992,"f":0.1,"g":5e-324}"#,
                r#"{"big":9007199254740992,"neg":-9007199254740992,"f":0.1,"g":5e-324}"#,
            ),
            // Integers a double holds, written as JavaScript writes them, pass.
            (
                r#"{"x":487942575495534350000,"y":1152921504606847000}"#,
                r#"{"x":487942575495534350000,"y":1152921504606847000}"#,
            ),
            (
                r#"{"nested":{"2":{"1":[{"b":1,"0":0}]}}}"#,
                r#"{"nested":{"2":{"1":[{"0":0,"b":1}]}}}"#,
            ),
        ] {
            assert_eq!(canon(input).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn refuses_what_parsers_read_differently() {
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"b":1,"b":1}}"#,
            r#"{"x":1e400}"#,
            r#"{"x":-1e400}"#,
            r#"{"x":9007199254740993}"#,
            r#"{"id":12345678901234567890}"#,
            r#"{"x":1152921504606846976}"#,
            r#"{"x":-18446744073709551616}"#,
            r#"{"s":"\ud800"}"#,
            r#"{"s":"\udc00x"}"#,
            r#"{"s":"\ud800\u0041"}"#,
            "[1,2]",
            "\"s\"",
            "{",
            "{} {}",
            "",
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":+1}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":tru}"#,
            r#"{'a':1}"#,
        ] {
            assert!(canon(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(canonical_json_object(&[b'{', 0xff, b'}']).is_err());
    }

    #[test]
    fn depth_is_limited_to_64() {
        let ok = format!(
            "{}{}",
            "{\"a\":".repeat(MAX_DEPTH),
            "1".to_owned() + &"}".repeat(MAX_DEPTH)
        );
        assert!(canon(&ok).is_ok());
        let deep = format!(
            "{}1{}",
            "{\"a\":".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert!(canon(&deep).is_err());
        let arrays = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert!(canon(&arrays).is_err());
        let huge = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(
            canon(&huge).is_err(),
            "refused before any recursion trouble"
        );
    }
}
