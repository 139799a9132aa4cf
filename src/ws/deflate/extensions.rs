//! The `Sec-WebSocket-Extensions` header (RFC 6455 §9.1): a list of extensions, each
//! a token with `;`-separated parameters whose values are tokens or quoted strings.

use crate::ws::error::HandshakeError;

/// One extension of an `Sec-WebSocket-Extensions` list: its name and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The extension token, as sent.
    pub name: String,
    /// Parameters (name, value if any), in order; quoted values are unquoted.
    pub params: Vec<(String, Option<String>)>,
}

/// Parses the extension list of one or more `Sec-WebSocket-Extensions` values (RFC
/// 6455 §9.1: `extension *( "," extension )`, each `token *( ";" param )`, a param
/// `token [ "=" ( token | quoted-string ) ]`). `Err` on anything else.
pub fn parse_extensions<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Extension>, HandshakeError> {
    let bad = || HandshakeError::BadHeader("Sec-WebSocket-Extensions");
    let mut out = Vec::new();
    for value in values {
        let mut p = Tokens {
            s: value.as_bytes(),
            at: 0,
        };
        loop {
            p.skip_space();
            if p.eat(b',') {
                continue; // empty list elements are allowed (RFC 7230 §7)
            }
            if p.done() {
                break;
            }
            let name = p.token().ok_or_else(bad)?;
            let mut params = Vec::new();
            loop {
                p.skip_space();
                if p.done() || p.eat(b',') {
                    break;
                }
                if !p.eat(b';') {
                    return Err(bad());
                }
                p.skip_space();
                let key = p.token().ok_or_else(bad)?;
                p.skip_space();
                let value = if p.eat(b'=') {
                    p.skip_space();
                    Some(p.token().or_else(|| p.quoted()).ok_or_else(bad)?)
                } else {
                    None
                };
                params.push((key, value));
            }
            out.push(Extension { name, params });
        }
    }
    Ok(out)
}

/// A cursor over a header value.
struct Tokens<'a> {
    s: &'a [u8],
    at: usize,
}

impl Tokens<'_> {
    fn done(&self) -> bool {
        self.at >= self.s.len()
    }

    fn skip_space(&mut self) {
        while self
            .s
            .get(self.at)
            .is_some_and(|&b| b == b' ' || b == b'\t')
        {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.s.get(self.at) == Some(&b);
        self.at += hit as usize;
        hit
    }

    /// An HTTP token (RFC 7230 §3.2.6).
    fn token(&mut self) -> Option<String> {
        let start = self.at;
        while self
            .s
            .get(self.at)
            .is_some_and(|&b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        {
            self.at += 1;
        }
        (self.at > start).then(|| String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
    }

    /// A quoted-string, unquoted (`\x` stands for `x`).
    fn quoted(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut v = Vec::new();
        loop {
            match *self.s.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(String::from_utf8_lossy(&v).into_owned());
                }
                b'\\' => {
                    v.push(*self.s.get(self.at + 1)?);
                    self.at += 2;
                }
                b => {
                    v.push(b);
                    self.at += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_lists_parse_with_quotes_and_several_fields() {
        let e = parse_extensions([
            "permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\", x-foo",
            "permessage-deflate ;server_no_context_takeover",
        ])
        .unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0].params,
            vec![
                ("client_max_window_bits".into(), None),
                ("server_max_window_bits".into(), Some("10".into()))
            ]
        );
        assert_eq!(e[1].name, "x-foo");
        assert_eq!(
            e[2].params,
            vec![("server_no_context_takeover".into(), None)]
        );
        for bad in [
            "permessage-deflate; =1",
            "a b",
            "p; x=\"unterminated",
            "p; x=",
        ] {
            assert!(parse_extensions([bad]).is_err(), "{bad}");
        }
    }
}
