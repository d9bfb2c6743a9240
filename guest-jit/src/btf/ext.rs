//! `.BTF.ext`: per-section function info and line info.
//!
//! Each info part is a record size followed by blocks, one per ELF code
//! section: `{u32 sec_name_off, u32 num_info, num_info records}`. Clang
//! writes instruction offsets in bytes from the section start; they are
//! kept here as slot indices, as libbpf converts them.

use super::{Btf, BtfError, Header, SourceLine, le32};

const SECTION: &str = ".BTF.ext";
/// `struct btf_ext_header` up to the line info fields; clang's header also
/// has the CO-RE relocation fields (32 bytes), which are not read.
const EXT_HEADER_MIN: usize = 24;
/// `struct bpf_func_info`: `insn_off`, `type_id`.
const FUNC_RECORD_MIN: u32 = 8;
/// `struct bpf_line_info`: `insn_off`, `file_name_off`, `line_off`,
/// `line_col`.
const LINE_RECORD_MIN: u32 = 16;
/// `line_col` keeps the column in its low 10 bits.
const LINE_COL_BITS: u32 = 10;

/// The records of one info part for one ELF section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfoSection<T> {
    /// Name of the ELF code section the records describe.
    pub section: String,
    /// Records, in the order clang wrote them (by instruction).
    pub records: Vec<T>,
}

/// A function's BTF type (`struct bpf_func_info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuncInfo {
    /// Slot of the function's first instruction in its section.
    pub slot: usize,
    /// Id of its `FUNC` type in `.BTF`.
    pub type_id: u32,
}

/// The source line of an instruction (`struct bpf_line_info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineInfo {
    /// Slot of the instruction in its section.
    pub slot: usize,
    /// Where it came from.
    pub line: SourceLine,
}

/// A parsed `.BTF.ext` section, its strings resolved through `.BTF`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BtfExt {
    /// Function info, per section.
    pub func_info: Vec<InfoSection<FuncInfo>>,
    /// Line info, per section.
    pub line_info: Vec<InfoSection<LineInfo>>,
}

impl BtfExt {
    /// Parses `bytes`, naming strings from `btf`'s string table.
    pub fn parse(bytes: &[u8], btf: &Btf) -> Result<BtfExt, BtfError> {
        let header = Header::parse(SECTION, bytes, EXT_HEADER_MIN)?;
        let func = header.part("func_info", header.word(8), header.word(12))?;
        let line = header.part("line_info", header.word(16), header.word(20))?;
        let func_info = read_part(btf, "func_info", func, FUNC_RECORD_MIN, |_, name, r| {
            Ok(FuncInfo {
                slot: insn_slot("func_info", name, le32(r, 0))?,
                type_id: le32(r, 4),
            })
        })?;
        let line_info = read_part(btf, "line_info", line, LINE_RECORD_MIN, |btf, name, r| {
            let slot = insn_slot("line_info", name, le32(r, 0))?;
            let text = |offset: u32, what: &str| {
                btf.string(offset)
                    .map(str::to_owned)
                    .ok_or_else(|| BtfError::ResolveString {
                        what: format!("The {what} of a line_info record for section `{name}`"),
                        offset,
                        len: btf.strings.len(),
                    })
            };
            let line_col = le32(r, 12);
            Ok(LineInfo {
                slot,
                line: SourceLine {
                    file: text(le32(r, 4), "file name")?,
                    line: line_col >> LINE_COL_BITS,
                    column: line_col & ((1 << LINE_COL_BITS) - 1),
                    text: text(le32(r, 8), "source text")?,
                },
            })
        })?;
        Ok(BtfExt {
            func_info,
            line_info,
        })
    }

    /// The line info for the ELF section `name`, if there is any.
    pub fn lines_of(&self, name: &str) -> &[LineInfo] {
        self.line_info
            .iter()
            .find(|s| s.section == name)
            .map_or(&[], |s| &s.records)
    }
}

/// Converts a byte offset from a record into a slot.
fn insn_slot(part: &'static str, name: &str, offset: u32) -> Result<usize, BtfError> {
    if !offset.is_multiple_of(8) {
        return Err(BtfError::AlignInsnOffset {
            part,
            name: name.to_owned(),
            offset,
        });
    }
    Ok(usize::try_from(offset / 8).unwrap_or(usize::MAX))
}

/// Reads one info part: a record size, then blocks until the part ends.
fn read_part<T>(
    btf: &Btf,
    part: &'static str,
    bytes: &[u8],
    min: u32,
    record: impl Fn(&Btf, &str, &[u8]) -> Result<T, BtfError>,
) -> Result<Vec<InfoSection<T>>, BtfError> {
    let mut sections = Vec::new();
    if bytes.is_empty() {
        return Ok(sections);
    }
    let truncated = |offset: usize| BtfError::ReadBlock {
        section: SECTION,
        part,
        offset,
        size: bytes.len(),
    };
    if bytes.len() < 4 {
        return Err(truncated(0));
    }
    let size = le32(bytes, 0);
    if size < min || !size.is_multiple_of(4) {
        return Err(BtfError::CheckRecordSize {
            section: SECTION,
            part,
            size,
            min,
        });
    }
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let mut pos = 4;
    while pos < bytes.len() {
        if bytes.len() - pos < 8 {
            return Err(truncated(pos));
        }
        let name_off = le32(bytes, pos);
        let count = le32(bytes, pos + 4);
        let name = btf
            .string(name_off)
            .ok_or_else(|| BtfError::ResolveString {
                what: format!("A {part} block's section name"),
                offset: name_off,
                len: btf.strings.len(),
            })?
            .to_owned();
        if count == 0 {
            return Err(BtfError::CountRecords {
                section: SECTION,
                part,
                name,
            });
        }
        pos += 8;
        let left = bytes.len() - pos;
        let end = usize::try_from(count)
            .ok()
            .and_then(|count| count.checked_mul(size))
            .filter(|&len| len <= left)
            .map(|len| pos + len)
            .ok_or_else(|| BtfError::ReadRecords {
                section: SECTION,
                part,
                name: name.clone(),
                count,
                record_size: size,
                left,
            })?;
        let records = bytes[pos..end]
            .chunks_exact(size)
            .map(|r| record(btf, &name, r))
            .collect::<Result<Vec<_>, _>>()?;
        sections.push(InfoSection {
            section: name,
            records,
        });
        pos = end;
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{STRINGS, setup_btf, setup_types};
    use super::*;

    /// Strings: "", "int", "main", "ctx", then section, file and text.
    fn setup_strings() -> Vec<u8> {
        let mut s = STRINGS.to_vec();
        s.extend(b"syscall\0a.c\0return 0;\0"); // at 14, 22, 26
        s
    }

    fn setup_ext(func: &[u8], line: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(super::super::BTF_MAGIC.to_le_bytes());
        out.extend([1, 0]);
        out.extend(32u32.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend((func.len() as u32).to_le_bytes());
        out.extend((func.len() as u32).to_le_bytes());
        out.extend((line.len() as u32).to_le_bytes());
        out.extend([0; 8]); // CO-RE relocations: none
        out.extend(func);
        out.extend(line);
        out
    }

    fn words(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn parses_func_and_line_info() {
        let btf = Btf::parse(&setup_btf(&setup_types(), &setup_strings())).unwrap();
        let func = words(&[8, 14, 1, 0, 3]);
        let line = words(&[16, 14, 2, 0, 22, 26, (7 << 10) | 5, 16, 22, 26, 8 << 10]);
        let ext = BtfExt::parse(&setup_ext(&func, &line), &btf).unwrap();
        assert_eq!(
            ext.func_info,
            [InfoSection {
                section: "syscall".to_owned(),
                records: vec![FuncInfo {
                    slot: 0,
                    type_id: 3
                }],
            }]
        );
        let lines = ext.lines_of("syscall");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].slot, 2);
        assert_eq!(
            lines[0].line,
            SourceLine {
                file: "a.c".to_owned(),
                line: 7,
                column: 5,
                text: "return 0;".to_owned(),
            }
        );
        assert!(ext.lines_of(".text").is_empty());
    }

    #[test]
    fn refuses_bad_parts() {
        let btf = Btf::parse(&setup_btf(&setup_types(), &setup_strings())).unwrap();
        let line = words(&[16, 14, 3, 0, 22, 26, 7 << 10]);
        let err = BtfExt::parse(&setup_ext(&[], &line), &btf).unwrap_err();
        assert_eq!(
            err.to_string(),
            ".BTF.ext line_info block for section `syscall` claims 3 records of 16 bytes, but 16 bytes remain"
        );
        let line = words(&[12, 14, 1, 0, 22, 26]);
        let err = BtfExt::parse(&setup_ext(&[], &line), &btf).unwrap_err();
        assert_eq!(
            err.to_string(),
            ".BTF.ext line_info record size 12 is below the minimum 16 or not a multiple of 4"
        );
        let line = words(&[16, 14, 1, 4, 22, 26, 7 << 10]);
        let err = BtfExt::parse(&setup_ext(&[], &line), &btf).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Record in line_info for section `syscall` has instruction offset 4, not a multiple of 8"
        );
        let line = words(&[16, 14, 1, 0, 22, 999, 7 << 10]);
        let err = BtfExt::parse(&setup_ext(&[], &line), &btf).unwrap_err();
        assert_eq!(
            err.to_string(),
            "The source text of a line_info record for section `syscall` names string offset 999, outside the string table (36 bytes)"
        );
        let func = words(&[8, 14, 0]);
        let err = BtfExt::parse(&setup_ext(&func, &[]), &btf).unwrap_err();
        assert_eq!(
            err.to_string(),
            ".BTF.ext func_info block for section `syscall` has no records"
        );
        let mut bytes = setup_ext(&[], &[]);
        bytes[12..16].copy_from_slice(&64u32.to_le_bytes());
        assert!(matches!(
            BtfExt::parse(&bytes, &btf),
            Err(BtfError::CheckBounds {
                part: "func_info",
                ..
            })
        ));
    }
}
