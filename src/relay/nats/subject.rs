//! A relay topic as one NATS subject token, and back.
//!
//! NATS splits subjects on `.`, treats `*` and `>` as wildcards and refuses whitespace,
//! so a topic cannot be used as it is. Every byte outside `A-Z a-z 0-9 - _` becomes
//! `%XX` (two upper-case hex digits), `%` included: `book.BTC/USD` is
//! `book%2EBTC%2FUSD`. The token is then always one, never a wildcard, and the mapping
//! is reversible. A subject is `<prefix>.<token>`, so `<prefix>.*` matches every
//! topic.

/// Appends `topic`, escaped as the module says, to `out`.
pub fn push_token(out: &mut String, topic: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in topic {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
}

/// `<prefix>.<topic escaped>`.
pub fn subject(prefix: &str, topic: &[u8]) -> String {
    let mut s = String::with_capacity(prefix.len() + 1 + topic.len() * 3);
    s.push_str(prefix);
    s.push('.');
    push_token(&mut s, topic);
    s
}

/// The topic a token escapes, or `None` if it is not one [`push_token`] makes.
pub fn topic_of_token(token: &str) -> Option<Vec<u8>> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            if text.bytes().any(|c| c.is_ascii_lowercase()) {
                return None;
            }
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

/// Why a subject (or a subject pattern, when `wildcards`) cannot be used: empty, an
/// empty token, whitespace, or a wildcard where none may be (`>` only as the last
/// token, `*` and `>` only as whole tokens).
pub fn check_subject(subject: &str, wildcards: bool) -> Result<(), String> {
    if subject.is_empty() {
        return Err("is empty".into());
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            return Err(format!("{subject:?} has an empty token"));
        }
        if t.bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!(
                "{subject:?} holds whitespace or a control character"
            ));
        }
        let wild = *t == "*" || *t == ">";
        if wild && !wildcards {
            return Err(format!("{subject:?} holds a wildcard"));
        }
        if !wild && (t.contains('*') || t.contains('>')) {
            return Err(format!("{subject:?}: '*' and '>' must be whole tokens"));
        }
        if *t == ">" && i + 1 != tokens.len() {
            return Err(format!("{subject:?}: '>' must be the last token"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_what_nats_gives_meaning_to() {
        assert_eq!(subject("feedrelay", b"BTC-USD"), "feedrelay.BTC-USD");
        assert_eq!(subject("fr", b"book.BTC/USD"), "fr.book%2EBTC%2FUSD");
        assert_eq!(subject("fr", b"a b*>%"), "fr.a%20b%2A%3E%25");
        assert_eq!(subject("fr", "é".as_bytes()), "fr.%C3%A9");
    }

    #[test]
    fn refuses_tokens_it_did_not_make() {
        for t in ["a.b", "%2", "%2e", "%zz", "a b", "*"] {
            assert_eq!(topic_of_token(t), None, "{t}");
        }
    }

    #[test]
    fn checks_subjects_and_patterns() {
        assert!(check_subject("feedrelay", false).is_ok());
        assert!(check_subject("desk.a", false).is_ok());
        assert!(check_subject("feedrelay.>", true).is_ok());
        assert!(check_subject("feedrelay.*.x", true).is_ok());
        for (s, wild) in [
            ("", true),
            ("a..b", true),
            ("a.", true),
            ("a b", true),
            ("a.*", false),
            ("a.>.b", true),
            ("a.b*", true),
        ] {
            assert!(check_subject(s, wild).is_err(), "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn every_topic_is_one_token_and_comes_back(topic in proptest::collection::vec(any::<u8>(), 0..64)) {
            let s = subject("p", &topic);
            let token = &s[2..];
            prop_assert!(!token.contains('.'));
            prop_assert!(token.is_empty() || check_subject(&s, false).is_ok());
            prop_assert_eq!(topic_of_token(token), Some(topic));
        }
    }
}
