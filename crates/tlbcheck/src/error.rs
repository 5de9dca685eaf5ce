//! Scenario errors: one message, the byte span it is about, and the source
//! it came from, so that a report can say file, line and column and show
//! the offending text.

use miette::{Diagnostic, NamedSource, SourceSpan};
use std::fmt;

/// A byte range in a scenario's source text.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// Offset of the first byte.
    pub start: usize,
    /// Length in bytes (0 for "at this point", e.g. end of input).
    pub len: usize,
}

impl Span {
    /// A span from `start` to `end` (exclusive).
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start,
            len: end.saturating_sub(start),
        }
    }

    /// The span from the start of `self` to the end of `other`.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start, other.start + other.len)
    }

    /// One past the last byte.
    pub fn end(self) -> usize {
        self.start + self.len
    }
}

/// An error located in a scenario before the source is attached: what the
/// parser and the lowering produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// Where.
    pub span: Span,
    /// What is wrong, or what was expected and what was found.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub help: Option<String>,
}

impl Located {
    /// An error at `span`.
    pub fn new(span: Span, message: impl Into<String>) -> Located {
        Located {
            span,
            message: message.into(),
            help: None,
        }
    }

    /// Adds a hint.
    pub fn with_help(mut self, help: impl Into<String>) -> Located {
        self.help = Some(help.into());
        self
    }
}

/// A scenario error with its file name and source: `Display` gives
/// `file:line:column: message`, and the [`Diagnostic`] implementation lets
/// miette draw the source line with the span underlined. Boxed, so that
/// results carrying it stay small; the fields are reached through `Deref`.
#[derive(Debug, Clone)]
pub struct ScenarioError(Box<ErrorData>);

/// The contents of a [`ScenarioError`].
#[derive(Debug, Clone)]
pub struct ErrorData {
    /// File name as given (or `<input>`).
    pub file: String,
    /// 1-based line of the span's start.
    pub line: usize,
    /// 1-based column (in characters) of the span's start.
    pub column: usize,
    /// The located error.
    pub error: Located,
    src: NamedSource<String>,
}

impl std::ops::Deref for ScenarioError {
    type Target = ErrorData;
    fn deref(&self) -> &ErrorData {
        &self.0
    }
}

impl ScenarioError {
    /// Attaches `source` (named `file`) to a located error.
    pub fn new(file: &str, source: &str, error: Located) -> ScenarioError {
        let start = error.span.start.min(source.len());
        let before = &source[..floor_char_boundary(source, start)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        ScenarioError(Box::new(ErrorData {
            file: file.to_string(),
            line,
            column,
            error,
            src: NamedSource::new(file, source.to_string()),
        }))
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.error.message
        )
    }
}

impl std::error::Error for ScenarioError {}

impl Diagnostic for ScenarioError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("tlbcheck::scenario"))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.error
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let span = SourceSpan::new(self.error.span.start.into(), self.error.span.len);
        Some(Box::new(std::iter::once(
            miette::LabeledSpan::new_with_span(Some("here".to_string()), span),
        )))
    }
}
