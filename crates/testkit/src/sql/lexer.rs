//! A byte-based SQL lexer. Tokens borrow from the input; only strings with escapes allocate.

use std::borrow::Cow;

use crate::error::EmuError;

/// One token.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok<'a> {
    /// A bare word: keyword or identifier (original case).
    Word(&'a str),
    /// A backquoted identifier (case kept, quotes removed).
    Quoted(&'a str),
    /// A string literal, escapes resolved (`\x` is kept verbatim for hex VARBINARY values).
    Str(Cow<'a, str>),
    /// A number: digits with an optional fraction and exponent, or `0x` hex.
    Num(&'a str),
    /// A number directly followed by a unit: `10d`, `1h`, `3650d`.
    Duration(&'a str, &'a str),
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `,`.
    Comma,
    /// `.`.
    Dot,
    /// `;`.
    Semi,
    /// `*`.
    Star,
    /// `+`.
    Plus,
    /// `-`.
    Minus,
    /// `/`.
    Slash,
    /// `%`.
    Percent,
    /// `=` or `==`.
    Eq,
    /// `!=` or `<>`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `?` (parameter marker; not supported by the executor).
    Question,
    /// End of input.
    Eof,
}

/// A token with its byte offset in the statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Token<'a> {
    /// The token.
    pub tok: Tok<'a>,
    /// Byte offset of its first character.
    pub pos: usize,
}

/// Splits `sql` into tokens, ending with [`Tok::Eof`].
pub fn tokenize(sql: &str) -> Result<Vec<Token<'_>>, EmuError> {
    let b = sql.as_bytes();
    let mut out = Vec::with_capacity(sql.len() / 3 + 1);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                i += 1;
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                loop {
                    if i + 1 >= b.len() {
                        return Err(EmuError::syntax(&sql[start..]));
                    }
                    if b[i] == b'*' && b[i + 1] == b'/' {
                        i += 2;
                        break;
                    }
                    i += 1;
                }
                continue;
            }
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b';' => {
                i += 1;
                Tok::Semi
            }
            b'*' => {
                i += 1;
                Tok::Star
            }
            b'+' => {
                i += 1;
                Tok::Plus
            }
            b'-' => {
                i += 1;
                Tok::Minus
            }
            b'/' => {
                i += 1;
                Tok::Slash
            }
            b'%' => {
                i += 1;
                Tok::Percent
            }
            b'?' => {
                i += 1;
                Tok::Question
            }
            b'=' => {
                i += if b.get(i + 1) == Some(&b'=') { 2 } else { 1 };
                Tok::Eq
            }
            b'!' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Ne
            }
            b'<' => match b.get(i + 1) {
                Some(b'=') => {
                    i += 2;
                    Tok::Le
                }
                Some(b'>') => {
                    i += 2;
                    Tok::Ne
                }
                _ => {
                    i += 1;
                    Tok::Lt
                }
            },
            b'>' => {
                if b.get(i + 1) == Some(&b'=') {
                    i += 2;
                    Tok::Ge
                } else {
                    i += 1;
                    Tok::Gt
                }
            }
            b'`' => {
                i += 1;
                let s = i;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
                if i >= b.len() {
                    return Err(EmuError::syntax(&sql[start..]));
                }
                i += 1;
                Tok::Quoted(&sql[s..i - 1])
            }
            b'\'' | b'"' => {
                let (s, end) = lex_string(sql, i)?;
                i = end;
                Tok::Str(s)
            }
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i = lex_number_end(b, i);
                Tok::Num(&sql[start..i])
            }
            b'.' => {
                i += 1;
                Tok::Dot
            }
            b'0'..=b'9' => {
                if c == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X')) {
                    i += 2;
                    while i < b.len() && b[i].is_ascii_hexdigit() {
                        i += 1;
                    }
                    Tok::Num(&sql[start..i])
                } else {
                    i = lex_number_end(b, i);
                    let num_end = i;
                    if i < b.len() && b[i].is_ascii_alphabetic() {
                        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                            i += 1;
                        }
                        Tok::Duration(&sql[start..num_end], &sql[num_end..i])
                    } else {
                        Tok::Num(&sql[start..i])
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                Tok::Word(&sql[start..i])
            }
            _ => {
                let end = sql[start..]
                    .char_indices()
                    .nth(1)
                    .map_or(sql.len(), |(k, _)| start + k);
                return Err(EmuError::syntax(&sql[start..end]));
            }
        };
        out.push(Token { tok, pos: start });
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: sql.len(),
    });
    Ok(out)
}

fn lex_number_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    i
}

/// Lexes a quoted string starting at `start` (the quote). Returns the value and the end offset.
fn lex_string(sql: &str, start: usize) -> Result<(Cow<'_, str>, usize), EmuError> {
    let b = sql.as_bytes();
    let q = b[start];
    let mut i = start + 1;
    let s = i;
    // Fast path: no escapes.
    while i < b.len() && b[i] != q && b[i] != b'\\' {
        i += 1;
    }
    if i < b.len() && b[i] == q && b.get(i + 1) != Some(&q) {
        return Ok((Cow::Borrowed(&sql[s..i]), i + 1));
    }
    let mut out = String::with_capacity(i - s + 8);
    out.push_str(&sql[s..i]);
    loop {
        if i >= b.len() {
            return Err(EmuError::syntax(&sql[start..]));
        }
        let c = b[i];
        if c == q {
            if b.get(i + 1) == Some(&q) {
                out.push(q as char);
                i += 2;
                continue;
            }
            return Ok((Cow::Owned(out), i + 1));
        }
        if c == b'\\' {
            let Some(&n) = b.get(i + 1) else {
                return Err(EmuError::syntax(&sql[start..]));
            };
            match n {
                b'n' => out.push('\n'),
                b't' => out.push('\t'),
                b'r' => out.push('\r'),
                b'0' => out.push('\0'),
                b'\\' => out.push('\\'),
                b'\'' => out.push('\''),
                b'"' => out.push('"'),
                b'x' | b'X' => out.push_str("\\x"),
                b'%' => out.push_str("\\%"),
                b'_' => out.push_str("\\_"),
                _ => {
                    // Unknown escape: keep the character (UTF-8 aware).
                    let ch_end = sql[i + 1..]
                        .char_indices()
                        .nth(1)
                        .map_or(sql.len(), |(k, _)| i + 1 + k);
                    out.push_str(&sql[i + 1..ch_end]);
                    i = ch_end;
                    continue;
                }
            }
            i += 2;
            continue;
        }
        // Copy a run of plain bytes (keeps UTF-8 sequences whole).
        let run = i;
        while i < b.len() && b[i] != q && b[i] != b'\\' {
            i += 1;
        }
        out.push_str(&sql[run..i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok<'_>> {
        tokenize(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn basic_tokens() {
        assert_eq!(
            toks("select * from `Db`.t1 where ts>=10 and v<>'a''b';"),
            vec![
                Tok::Word("select"),
                Tok::Star,
                Tok::Word("from"),
                Tok::Quoted("Db"),
                Tok::Dot,
                Tok::Word("t1"),
                Tok::Word("where"),
                Tok::Word("ts"),
                Tok::Ge,
                Tok::Num("10"),
                Tok::Word("and"),
                Tok::Word("v"),
                Tok::Ne,
                Tok::Str(Cow::Owned("a'b".into())),
                Tok::Semi,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn numbers_durations_comments() {
        assert_eq!(
            toks("1.5e3 -- c\n 10d /* x */ .5 0x1F now-1h # tail"),
            vec![
                Tok::Num("1.5e3"),
                Tok::Duration("10", "d"),
                Tok::Num(".5"),
                Tok::Num("0x1F"),
                Tok::Word("now"),
                Tok::Minus,
                Tok::Duration("1", "h"),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn string_escapes() {
        assert_eq!(
            toks(r"'a\'b\\c\n'")[0],
            Tok::Str(Cow::Owned("a'b\\c\n".into()))
        );
        assert_eq!(toks(r"'\x0aff'")[0], Tok::Str(Cow::Owned("\\x0aff".into())));
        assert_eq!(toks("\"dq\"")[0], Tok::Str(Cow::Borrowed("dq")));
        assert_eq!(toks("'héllo'")[0], Tok::Str(Cow::Borrowed("héllo")));
    }

    #[test]
    fn unterminated_is_error() {
        assert!(tokenize("'abc").is_err());
        assert!(tokenize("`abc").is_err());
        assert!(tokenize("/* abc").is_err());
        assert!(tokenize("'abc\\").is_err());
        assert!(tokenize("select @").is_err());
        assert!(tokenize("select é").is_ok());
    }
}
