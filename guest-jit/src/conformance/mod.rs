//! The bpf_conformance suite's `.data` test files, and running them.
//!
//! A file is a preamble of `#` comments followed by sections, each opened by
//! a `-- name` line:
//!
//! ```text
//! -- asm                 the program as text (crate::asm syntax)
//! -- raw                 the program as 64-bit words (0x5566778800000018)
//!                        or as lines of 8 hex bytes (07 00 01 00 01 00 00 00)
//! -- mem                 the context bytes, in hex (r1 points to them, r2 is
//!                        their length)
//! -- result              the expected return value, hex (0x..) or decimal
//! -- error               an error is expected; the text, if any, is part of
//!                        its message
//! -- c                   the C source the program was compiled from
//! -- no register offset  a note for JITs (e.g. "call instruction")
//! ```
//!
//! Any other section makes the file invalid. When both `asm` and `raw` are
//! present, `raw` is the program and the two must agree.

mod run;

use thiserror::Error;

use crate::insn::Insn;

/// The `.data` files directly in `dir`, sorted by name.
pub fn data_files(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "data") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

pub use run::{
    CONFORMANCE_STEP_LIMIT, CaseError, CheckError, ConformanceHelpers, UNWIND_HELPER_ID,
    check_case, error_chain, judge, program_of, run_case,
};

/// What a test expects of its program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// The program returns this value.
    Return(u64),
    /// Assembling, decoding or running fails with an error whose message
    /// chain contains this text (any error if empty).
    Error(String),
}

/// One parsed `.data` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestCase {
    /// The `-- asm` section, as written.
    pub asm: Option<String>,
    /// The `-- raw` section, as instructions.
    pub raw: Option<Vec<Insn>>,
    /// The `-- mem` section: context bytes (empty when absent).
    pub mem: Vec<u8>,
    /// The `-- result` or `-- error` section.
    pub expected: Expected,
    /// The `-- c` section.
    pub c_source: Option<String>,
    /// The `-- no register offset` section.
    pub no_register_offset: Option<String>,
}

/// Why a `.data` file is not a valid test.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum TestFileError {
    /// A section name the format does not have.
    #[error("Unknown section `{name}` on line {line}")]
    ReadSection {
        /// Line number.
        line: usize,
        /// The text after `--`.
        name: String,
    },
    /// The same section twice.
    #[error("Section `{name}` repeated on line {line}")]
    RepeatSection {
        /// Line number of the second header.
        line: usize,
        /// Section name.
        name: String,
    },
    /// Text before the first section that is not a comment.
    #[error("Line {line} is outside any section")]
    ReadPreamble {
        /// Line number.
        line: usize,
    },
    /// A `-- raw` token that is neither a `0x` word nor a hex byte, or bytes
    /// that do not make whole instructions.
    #[error("Invalid raw instruction text `{text}` on line {line}")]
    ParseRaw {
        /// Line number.
        line: usize,
        /// The token or line.
        text: String,
    },
    /// A `-- mem` token that is not a hex byte.
    #[error("Invalid memory byte `{text}` on line {line}")]
    ParseMem {
        /// Line number.
        line: usize,
        /// The token.
        text: String,
    },
    /// A `-- result` that is not one 64-bit number.
    #[error("Invalid result `{text}` on line {line}")]
    ParseResult {
        /// Line number.
        line: usize,
        /// The text.
        text: String,
    },
    /// Neither `-- asm` nor `-- raw`.
    #[error("The file has no program (no `-- asm` or `-- raw` section)")]
    FindProgram,
    /// Neither `-- result` nor `-- error`, or both.
    #[error("The file must have exactly one of `-- result` and `-- error`")]
    FindExpectation,
}

/// The sections of a file, by name, with the line number of each body line.
#[derive(Default)]
struct Sections<'a> {
    asm: Option<Vec<(usize, &'a str)>>,
    raw: Option<Vec<(usize, &'a str)>>,
    mem: Option<Vec<(usize, &'a str)>>,
    result: Option<Vec<(usize, &'a str)>>,
    error: Option<Vec<(usize, &'a str)>>,
    c: Option<Vec<(usize, &'a str)>>,
    no_register_offset: Option<Vec<(usize, &'a str)>>,
}

impl<'a> Sections<'a> {
    fn split(text: &'a str) -> Result<Self, TestFileError> {
        let mut sections = Sections::default();
        let mut current: Option<&mut Vec<(usize, &'a str)>> = None;
        for (i, line) in text.lines().enumerate() {
            let number = i + 1;
            let line = line.strip_suffix('\r').unwrap_or(line);
            if let Some(name) = line.strip_prefix("--") {
                let name = name.trim();
                let slot = match name {
                    "asm" => &mut sections.asm,
                    "raw" => &mut sections.raw,
                    "mem" => &mut sections.mem,
                    "result" => &mut sections.result,
                    "error" => &mut sections.error,
                    "c" => &mut sections.c,
                    "no register offset" => &mut sections.no_register_offset,
                    _ => {
                        return Err(TestFileError::ReadSection {
                            line: number,
                            name: name.to_owned(),
                        });
                    }
                };
                if slot.is_some() {
                    return Err(TestFileError::RepeatSection {
                        line: number,
                        name: name.to_owned(),
                    });
                }
                current = Some(slot.insert(Vec::new()));
                continue;
            }
            match current.as_mut() {
                Some(body) => body.push((number, line)),
                None if line.trim().is_empty() || line.starts_with('#') => {}
                None => return Err(TestFileError::ReadPreamble { line: number }),
            }
        }
        Ok(sections)
    }
}

/// The lines of a data section without blank lines and `#` comments.
fn data_lines<'a>(body: &[(usize, &'a str)]) -> impl Iterator<Item = (usize, &'a str)> {
    body.iter().filter_map(|&(n, line)| {
        let line = line.split('#').next().unwrap_or_default().trim();
        (!line.is_empty()).then_some((n, line))
    })
}

fn join(body: &[(usize, &str)]) -> String {
    let mut text = String::new();
    for (_, line) in body {
        text.push_str(line);
        text.push('\n');
    }
    text
}

fn hex_byte(token: &str) -> Option<u8> {
    if token.len() <= 2 {
        u8::from_str_radix(token, 16).ok()
    } else {
        None
    }
}

fn parse_u64(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn parse_raw(body: &[(usize, &str)]) -> Result<Vec<Insn>, TestFileError> {
    let mut bytes = Vec::new();
    let mut last_line = 0;
    for (line, text) in data_lines(body) {
        last_line = line;
        let error = |text: &str| TestFileError::ParseRaw {
            line,
            text: text.to_owned(),
        };
        let tokens: Vec<&str> = text.split_whitespace().collect();
        if let [word] = tokens[..]
            && word.starts_with("0x")
        {
            let word = parse_u64(word).ok_or_else(|| error(word))?;
            bytes.extend_from_slice(&word.to_le_bytes());
            continue;
        }
        for token in tokens {
            bytes.push(hex_byte(token).ok_or_else(|| error(token))?);
        }
    }
    Insn::slice_from_bytes(&bytes).map_err(|_| TestFileError::ParseRaw {
        line: last_line,
        text: format!("{} bytes", bytes.len()),
    })
}

fn parse_mem(body: &[(usize, &str)]) -> Result<Vec<u8>, TestFileError> {
    let mut bytes = Vec::new();
    for (line, text) in data_lines(body) {
        for token in text.split_whitespace() {
            bytes.push(hex_byte(token).ok_or_else(|| TestFileError::ParseMem {
                line,
                text: token.to_owned(),
            })?);
        }
    }
    Ok(bytes)
}

fn parse_result(body: &[(usize, &str)]) -> Result<u64, TestFileError> {
    let lines: Vec<(usize, &str)> = data_lines(body).collect();
    match lines[..] {
        [(line, text)] => parse_u64(text).ok_or_else(|| TestFileError::ParseResult {
            line,
            text: text.to_owned(),
        }),
        [] => Err(TestFileError::FindExpectation),
        [_, (line, text), ..] => Err(TestFileError::ParseResult {
            line,
            text: text.to_owned(),
        }),
    }
}

impl TestCase {
    /// Parses the text of a `.data` file.
    pub fn parse(text: &str) -> Result<TestCase, TestFileError> {
        let sections = Sections::split(text)?;
        let expected = match (&sections.result, &sections.error) {
            (Some(result), None) => Expected::Return(parse_result(result)?),
            (None, Some(error)) => Expected::Error(join(error).trim().to_owned()),
            _ => return Err(TestFileError::FindExpectation),
        };
        let asm = sections.asm.as_deref().map(join);
        let raw = sections.raw.as_deref().map(parse_raw).transpose()?;
        let has_program = sections
            .asm
            .as_deref()
            .is_some_and(|body| data_lines(body).next().is_some())
            || raw.as_ref().is_some_and(|r| !r.is_empty());
        if !has_program {
            return Err(TestFileError::FindProgram);
        }
        Ok(TestCase {
            asm,
            raw,
            mem: sections
                .mem
                .as_deref()
                .map(parse_mem)
                .transpose()?
                .unwrap_or_default(),
            expected,
            c_source: sections.c.as_deref().map(join),
            no_register_offset: sections.no_register_offset.as_deref().map(join),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_section() {
        let text = "# Copyright\n# SPDX\n-- c\nint f(void);\n-- asm\nmov %r0, 1 # one\n\
                    exit\n-- raw\n0x00000001000000b7\nb7 00 00 00 02 00 00 00\n-- mem\n\
                    00 Ff\n0a\n-- result\n0x1\n-- no register offset\ncall instruction\n";
        let case = TestCase::parse(text).unwrap();
        assert_eq!(case.asm.as_deref(), Some("mov %r0, 1 # one\nexit\n"));
        assert_eq!(
            case.raw,
            Some(vec![
                Insn::new(0xb7, 0, 0, 0, 1),
                Insn::new(0xb7, 0, 0, 0, 2)
            ])
        );
        assert_eq!(case.mem, [0x00, 0xff, 0x0a]);
        assert_eq!(case.expected, Expected::Return(1));
        assert_eq!(case.c_source.as_deref(), Some("int f(void);\n"));
        assert_eq!(
            case.no_register_offset.as_deref(),
            Some("call instruction\n")
        );
    }

    #[test]
    fn error_section_may_be_empty() {
        let case = TestCase::parse("-- raw\n95 00 00 00 00 00 00 00\n-- error\n").unwrap();
        assert_eq!(case.expected, Expected::Error(String::new()));
        let case = TestCase::parse("-- asm\nexit\n-- error\nInvalid").unwrap();
        assert_eq!(case.expected, Expected::Error("Invalid".to_owned()));
    }

    #[test]
    fn results_in_decimal_and_hex() {
        let case = TestCase::parse("-- asm\nexit\n-- result\n18446744073709551615\n").unwrap();
        assert_eq!(case.expected, Expected::Return(u64::MAX));
        let err = TestCase::parse("-- asm\nexit\n-- result\n0x1\n0x2\n").unwrap_err();
        assert_eq!(err.to_string(), "Invalid result `0x2` on line 5");
        let err = TestCase::parse("-- asm\nexit\n-- result\nzero\n").unwrap_err();
        assert_eq!(err.to_string(), "Invalid result `zero` on line 4");
    }

    #[test]
    fn structural_errors() {
        let cases = [
            ("# only comments\n", TestFileError::FindExpectation),
            ("-- result\n0x0\n", TestFileError::FindProgram),
            (
                "-- asm\n# nothing\n-- result\n0x0\n",
                TestFileError::FindProgram,
            ),
            (
                "-- asm\n-- Unknown directive\n",
                TestFileError::ReadSection {
                    line: 2,
                    name: "Unknown directive".to_owned(),
                },
            ),
            (
                "-- asm\nexit\n-- asm\n",
                TestFileError::RepeatSection {
                    line: 3,
                    name: "asm".to_owned(),
                },
            ),
            ("stray\n-- asm\n", TestFileError::ReadPreamble { line: 1 }),
            (
                "-- raw\n95 00 00\n-- result\n0\n",
                TestFileError::ParseRaw {
                    line: 2,
                    text: "3 bytes".to_owned(),
                },
            ),
            (
                "-- raw\n95 zz\n-- result\n0\n",
                TestFileError::ParseRaw {
                    line: 2,
                    text: "zz".to_owned(),
                },
            ),
            (
                "-- asm\nexit\n-- mem\n123\n-- result\n0\n",
                TestFileError::ParseMem {
                    line: 4,
                    text: "123".to_owned(),
                },
            ),
            (
                "-- asm\nexit\n-- result\n0\n-- error\n",
                TestFileError::FindExpectation,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(TestCase::parse(text), Err(expected), "{text:?}");
        }
        assert_eq!(
            TestFileError::ReadSection {
                line: 4,
                name: "Unknown directive".to_owned()
            }
            .to_string(),
            "Unknown section `Unknown directive` on line 4"
        );
    }

    #[test]
    fn windows_line_endings() {
        let case = TestCase::parse("-- asm\r\nexit\r\n-- result\r\n0x2\r\n").unwrap();
        assert_eq!(case.expected, Expected::Return(2));
    }
}
