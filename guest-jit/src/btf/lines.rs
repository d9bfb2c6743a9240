//! Source lines of a linked program, by slot.

use std::fmt;

/// A line of C source, as `.BTF.ext` line info records it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceLine {
    /// Source file as the compiler named it (`hello.bpf.c`, or a path).
    pub file: String,
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, 0 when unknown.
    pub column: u32,
    /// The text of the line, as the compiler copied it into BTF.
    pub text: String,
}

impl fmt::Display for SourceLine {
    /// `file:line:column`, or `file:line` without a column.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.column == 0 {
            write!(f, "{}:{}", self.file, self.line)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// The source line of each slot of a program.
///
/// Line info names the line where it changes, not every instruction; a
/// slot belongs to the closest record at or before it. A function that
/// starts without a record of its own gets an explicit "no line" entry, so
/// that lines never leak from one function into the next.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineTable {
    /// `(first slot, line)`, sorted by slot, one entry per slot at most.
    entries: Vec<(usize, Option<SourceLine>)>,
}

impl LineTable {
    /// An empty table: no slot has a line.
    pub fn new() -> LineTable {
        LineTable::default()
    }

    /// A table from `(first slot, line)` entries in any order; of several
    /// for one slot, the last counts.
    pub fn from_entries(mut entries: Vec<(usize, Option<SourceLine>)>) -> LineTable {
        // Stable: equal slots keep their order, and the last one wins.
        entries.sort_by_key(|(slot, _)| *slot);
        let mut deduped: Vec<(usize, Option<SourceLine>)> = Vec::with_capacity(entries.len());
        for entry in entries {
            match deduped.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => deduped.push(entry),
            }
        }
        LineTable { entries: deduped }
    }

    /// Records that slots from `slot` on come from `line` (`None`: from no
    /// known line), until the next entry. A later entry for the same slot
    /// replaces an earlier one; entries may come in any order.
    pub fn insert(&mut self, slot: usize, line: Option<SourceLine>) {
        match self.entries.binary_search_by_key(&slot, |(s, _)| *s) {
            Ok(i) => self.entries[i].1 = line,
            Err(i) => self.entries.insert(i, (slot, line)),
        }
    }

    /// The source line `slot` belongs to.
    pub fn get(&self, slot: usize) -> Option<&SourceLine> {
        let after = self.entries.partition_point(|(s, _)| *s <= slot);
        self.entries.get(after.checked_sub(1)?)?.1.as_ref()
    }

    /// The line recorded exactly at `slot`, where a new line starts (what a
    /// disassembly prints above the instruction).
    pub fn starting_at(&self, slot: usize) -> Option<&SourceLine> {
        let i = self.entries.binary_search_by_key(&slot, |(s, _)| *s).ok()?;
        self.entries[i].1.as_ref()
    }

    /// Every entry, by slot.
    pub fn iter(&self) -> impl Iterator<Item = (usize, Option<&SourceLine>)> {
        self.entries.iter().map(|(s, l)| (*s, l.as_ref()))
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: u32) -> SourceLine {
        SourceLine {
            file: "a.c".to_owned(),
            line: n,
            column: 3,
            text: format!("line {n}"),
        }
    }

    #[test]
    fn slots_take_the_closest_line_before_them() {
        let mut table = LineTable::new();
        table.insert(4, Some(line(20)));
        table.insert(0, Some(line(10)));
        table.insert(8, None);
        table.insert(9, Some(line(30)));
        assert_eq!(table.get(0), Some(&line(10)));
        assert_eq!(table.get(3), Some(&line(10)));
        assert_eq!(table.get(4), Some(&line(20)));
        assert_eq!(table.get(8), None);
        assert_eq!(table.get(100), Some(&line(30)));
        assert_eq!(table.starting_at(3), None);
        assert_eq!(table.starting_at(9), Some(&line(30)));
        assert_eq!(table.iter().count(), 4);
        assert_eq!(LineTable::new().get(0), None);
        let built = LineTable::from_entries(vec![
            (9, Some(line(1))),
            (4, Some(line(20))),
            (8, None),
            (0, Some(line(10))),
            (9, Some(line(30))),
        ]);
        assert_eq!(built, table);
    }

    #[test]
    fn displays_as_file_line_column() {
        assert_eq!(line(7).to_string(), "a.c:7:3");
        let mut no_column = line(7);
        no_column.column = 0;
        assert_eq!(no_column.to_string(), "a.c:7");
    }
}
