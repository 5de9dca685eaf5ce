//! The scenario lexer: words, quoted strings, a few punctuation marks and
//! line ends. `#` starts a comment that runs to the end of the line.
//!
//! A *word* is a run of letters, digits, `_`, `-` and `.`; numbers are
//! words too (`0x1000`, `0b0111`, `42`, `1_000`) and are interpreted by the
//! parser where a number is expected, so `4k` and `walk-cache-uaf` need no
//! special casing here.

use crate::error::{Located, Span};

/// A token kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// A word (identifier, keyword or number).
    Word(String),
    /// A double-quoted string, without the quotes.
    Str(String),
    /// One of `= [ ] { } , + :`.
    Punct(char),
    /// End of a line (comments are dropped, the newline stays).
    Newline,
    /// End of input.
    Eof,
}

impl Tok {
    /// How the token is named in "expected ..., found ..." messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Str(s) => format!("string \"{s}\""),
            Tok::Punct(c) => format!("`{c}`"),
            Tok::Newline => "end of line".to_string(),
            Tok::Eof => "end of file".to_string(),
        }
    }
}

/// A token and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Its bytes in the source.
    pub span: Span,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Splits `src` into tokens, ending with [`Tok::Eof`].
pub fn lex(src: &str) -> Result<Vec<Token>, Located> {
    let mut out = Vec::new();
    let mut it = src.char_indices().peekable();
    while let Some(&(i, c)) = it.peek() {
        match c {
            '\n' => {
                it.next();
                out.push(Token {
                    tok: Tok::Newline,
                    span: Span::new(i, i + 1),
                });
            }
            '#' => {
                while it.peek().is_some_and(|&(_, c)| c != '\n') {
                    it.next();
                }
            }
            c if c.is_whitespace() => {
                it.next();
            }
            '=' | '[' | ']' | '{' | '}' | ',' | '+' | ':' => {
                it.next();
                out.push(Token {
                    tok: Tok::Punct(c),
                    span: Span::new(i, i + 1),
                });
            }
            '"' => {
                it.next();
                let mut s = String::new();
                let mut end = None;
                for (j, d) in it.by_ref() {
                    match d {
                        '"' => {
                            end = Some(j + 1);
                            break;
                        }
                        '\n' => break,
                        d => s.push(d),
                    }
                }
                let Some(end) = end else {
                    return Err(Located::new(Span::new(i, i + 1), "unterminated string")
                        .with_help("close the string with `\"` on the same line"));
                };
                out.push(Token {
                    tok: Tok::Str(s),
                    span: Span::new(i, end),
                });
            }
            c if is_word_char(c) => {
                let mut end = i;
                let mut w = String::new();
                while let Some(&(j, d)) = it.peek() {
                    if !is_word_char(d) {
                        break;
                    }
                    w.push(d);
                    end = j + d.len_utf8();
                    it.next();
                }
                out.push(Token {
                    tok: Tok::Word(w),
                    span: Span::new(i, end),
                });
            }
            c => {
                return Err(Located::new(
                    Span::new(i, i + c.len_utf8()),
                    format!("unexpected character `{}`", c.escape_debug()),
                )
                .with_help(
                    "words are letters, digits, `_`, `-` and `.`; comments start with `#`",
                ));
            }
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        span: Span::new(src.len(), src.len()),
    });
    Ok(out)
}

/// Parses a number word: `0x` hex, `0b` binary, `0o` octal or decimal, with
/// optional `_` separators. `None` if the word is not a number or overflows.
pub fn number(w: &str) -> Option<u64> {
    let clean: String = w.chars().filter(|&c| c != '_').collect();
    let lower = clean.to_ascii_lowercase();
    let (digits, radix) = if let Some(h) = lower.strip_prefix("0x") {
        (h, 16)
    } else if let Some(b) = lower.strip_prefix("0b") {
        (b, 2)
    } else if let Some(o) = lower.strip_prefix("0o") {
        (o, 8)
    } else {
        (lower.as_str(), 10)
    };
    if digits.is_empty() || !w.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_every_radix() {
        assert_eq!(number("0x1_000"), Some(0x1000));
        assert_eq!(number("0b0111"), Some(7));
        assert_eq!(number("42"), Some(42));
        assert_eq!(number("4k"), None);
        assert_eq!(number("0x"), None);
        assert_eq!(number("0x1_0000_0000_0000_0000"), None, "overflow");
    }

    #[test]
    fn comments_vanish_and_lines_stay() {
        let t = lex("a = 1 # c\n[b]").unwrap();
        let kinds: Vec<_> = t.iter().map(|t| t.tok.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                Tok::Word("a".into()),
                Tok::Punct('='),
                Tok::Word("1".into()),
                Tok::Newline,
                Tok::Punct('['),
                Tok::Word("b".into()),
                Tok::Punct(']'),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn bad_characters_are_located() {
        let e = lex("ok\n  @").unwrap_err();
        assert_eq!(e.span, Span::new(5, 6));
        assert!(lex("\"open").is_err());
    }
}
