//! The values of `bpfvisor run --set NAME=VALUE` and `--call
//! PROG[@CPUS][=HEX]`, parsed by clap (a malformed one is a usage error,
//! exit 2), and the encoding of a `--set` integer at its variable's size.

use shm::layout::MAX_CPUS;

/// `--set NAME=VALUE`: a global variable to set before loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetVariable {
    /// The variable's C name.
    pub name: String,
    /// Its new value.
    pub value: VariableValue,
}

/// The value of a `--set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariableValue {
    /// An integer, encoded little-endian at the variable's size.
    Int(i128),
    /// `hex:BYTES`: the bytes themselves, for a variable of any size.
    Bytes(Vec<u8>),
}

/// Why an integer `--set` value cannot be stored in its variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The integer needs more bytes than the variable has.
    #[error("{value} does not fit in a {size}-byte variable")]
    Fit {
        /// The value given.
        value: i128,
        /// The variable's size.
        size: u64,
    },
    /// The variable is not 1, 2, 4 or 8 bytes.
    #[error("It is {size} bytes, not an integer: give its value as hex:BYTES")]
    Width {
        /// The variable's size.
        size: u64,
    },
}

/// `--call PROG[@CPUS][=HEX]`: one invocation of a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSpec {
    /// The program, by function or section name.
    pub program: String,
    /// The vCPUs it runs on at the same time, ascending (`[0]` when none
    /// are named).
    pub cpus: Vec<usize>,
    /// Input bytes, each vCPU gets a copy.
    pub data: Vec<u8>,
}

/// Parses `NAME=VALUE` (clap value parser of `--set`).
pub fn parse_set(text: &str) -> Result<SetVariable, String> {
    let (name, value) = text
        .split_once('=')
        .ok_or("expected NAME=VALUE (an integer, or hex:BYTES)")?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("`{name}` is not a variable name"));
    }
    let value = match value.strip_prefix("hex:") {
        Some(digits) => VariableValue::Bytes(parse_hex(digits)?),
        None => VariableValue::Int(parse_int(value)?),
    };
    Ok(SetVariable {
        name: name.to_owned(),
        value,
    })
}

/// An integer: decimal or `0x` hex, optionally negative, within what 64
/// bits hold signed or unsigned.
fn parse_int(text: &str) -> Result<i128, String> {
    let (negative, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (digits, radix) = match magnitude
        .strip_prefix("0x")
        .or_else(|| magnitude.strip_prefix("0X"))
    {
        Some(hex) => (hex, 16),
        None => (magnitude, 10),
    };
    let starts_with_digit = digits.chars().next().is_some_and(|c| c.is_digit(radix));
    let parsed = u128::from_str_radix(digits, radix)
        .ok()
        .filter(|_| starts_with_digit);
    let Some(magnitude) = parsed else {
        return Err(format!(
            "`{text}` is not an integer (decimal or 0x hex) or hex:BYTES"
        ));
    };
    let limit = if negative {
        1u128 << 63
    } else {
        u128::from(u64::MAX)
    };
    if magnitude > limit {
        return Err(format!("`{text}` does not fit in 64 bits"));
    }
    // Within 2^64: no overflow either way.
    let value = magnitude as i128;
    Ok(if negative { -value } else { value })
}

/// Hex bytes, whitespace ignored ("01 02" or "0102").
fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(digits).map_err(|e| format!("`{text}` is not hex bytes: {e}"))
}

/// `value` little-endian in `size` bytes (two's complement when
/// negative), if it fits as a signed or an unsigned integer of that size.
pub fn encode_int(value: i128, size: u64) -> Result<Vec<u8>, EncodeError> {
    if !matches!(size, 1 | 2 | 4 | 8) {
        return Err(EncodeError::Width { size });
    }
    let bits = size * 8;
    let min = -(1i128 << (bits - 1));
    let max = (1i128 << bits) - 1;
    if value < min || value > max {
        return Err(EncodeError::Fit { value, size });
    }
    Ok(value.to_le_bytes()[..size as usize].to_vec())
}

/// Parses `PROG[@CPUS][=HEX]` (clap value parser of `--call`).
pub fn parse_call(text: &str) -> Result<CallSpec, String> {
    let (target, data) = match text.split_once('=') {
        Some((target, data)) => (target, parse_hex(data)?),
        None => (text, Vec::new()),
    };
    let (program, cpus) = match target.split_once('@') {
        Some((program, cpus)) => (program, parse_cpus(cpus)?),
        None => (target, vec![0]),
    };
    if program.is_empty() {
        return Err("expected PROG[@CPUS][=HEX]: the program name is missing".into());
    }
    Ok(CallSpec {
        program: program.to_owned(),
        cpus,
        data,
    })
}

/// A CPU list: `2`, `0-3`, `0,2`, `0-1,4`; each CPU once, below
/// [`MAX_CPUS`]. Returned ascending.
pub fn parse_cpus(text: &str) -> Result<Vec<usize>, String> {
    let bad = |why: String| format!("CPU list `{text}`: {why}");
    let cpu = |s: &str| -> Result<usize, String> {
        let n: usize = s
            .trim()
            .parse()
            .map_err(|_| bad(format!("`{s}` is not a CPU number")))?;
        if n >= MAX_CPUS {
            return Err(bad(format!("CPU {n} is past the last, {}", MAX_CPUS - 1)));
        }
        Ok(n)
    };
    let mut seen = [false; MAX_CPUS];
    for item in text.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (cpu(a)?, cpu(b)?),
            None => (cpu(item)?, cpu(item)?),
        };
        if first > last {
            return Err(bad(format!("range `{item}` is empty")));
        }
        for (n, seen) in seen.iter_mut().enumerate().take(last + 1).skip(first) {
            if std::mem::replace(seen, true) {
                return Err(bad(format!("CPU {n} is named twice")));
            }
        }
    }
    Ok((0..MAX_CPUS).filter(|&n| seen[n]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_are_integers_or_hex_bytes() {
        let set = |s| parse_set(s).map(|v| (v.name, v.value));
        assert_eq!(set("bias=-3"), Ok(("bias".into(), VariableValue::Int(-3))));
        assert_eq!(set("m=0x10"), Ok(("m".into(), VariableValue::Int(16))));
        assert_eq!(set("m=-0X10"), Ok(("m".into(), VariableValue::Int(-16))));
        assert_eq!(
            set("m=18446744073709551615"),
            Ok(("m".into(), VariableValue::Int(u64::MAX.into())))
        );
        assert_eq!(
            set("m=-9223372036854775808"),
            Ok(("m".into(), VariableValue::Int(i64::MIN.into())))
        );
        assert_eq!(
            set("s=hex:01 ff"),
            Ok(("s".into(), VariableValue::Bytes(vec![1, 0xff])))
        );
        assert_eq!(
            set("m=a=b").unwrap_err(),
            "`a=b` is not an integer (decimal or 0x hex) or hex:BYTES"
        );
        for bad in [
            "m", "=3", "m=", "m=0x", "m=+-1", "m=1.5", "m=--1", "m=hex:0g",
        ] {
            assert!(parse_set(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_set("m=18446744073709551616").unwrap_err(),
            "`18446744073709551616` does not fit in 64 bits"
        );
        assert!(parse_set("m=-9223372036854775809").is_err());
    }

    #[test]
    fn integers_are_encoded_at_the_variables_size() {
        assert_eq!(encode_int(5, 4), Ok(vec![5, 0, 0, 0]));
        assert_eq!(
            encode_int(-3, 8),
            Ok(vec![0xfd; 1].into_iter().chain([0xff; 7]).collect())
        );
        assert_eq!(encode_int(255, 1), Ok(vec![0xff]));
        assert_eq!(encode_int(-128, 1), Ok(vec![0x80]));
        assert_eq!(encode_int(0xffff, 2), Ok(vec![0xff, 0xff]));
        assert_eq!(
            encode_int(256, 1).unwrap_err().to_string(),
            "256 does not fit in a 1-byte variable"
        );
        assert!(encode_int(-129, 1).is_err());
        assert!(encode_int(1 << 32, 4).is_err());
        assert_eq!(
            encode_int(1, 16).unwrap_err().to_string(),
            "It is 16 bytes, not an integer: give its value as hex:BYTES"
        );
    }

    #[test]
    fn calls_name_a_program_cpus_and_input() {
        assert_eq!(
            parse_call("chain"),
            Ok(CallSpec {
                program: "chain".into(),
                cpus: vec![0],
                data: vec![]
            })
        );
        assert_eq!(
            parse_call("locked_add@0-3=0a000000"),
            Ok(CallSpec {
                program: "locked_add".into(),
                cpus: vec![0, 1, 2, 3],
                data: vec![10, 0, 0, 0]
            })
        );
        assert_eq!(parse_call("p@2,0").map(|c| c.cpus), Ok(vec![0, 2]));
        assert_eq!(parse_call("p=01 02").map(|c| c.data), Ok(vec![1, 2]));
        assert_eq!(parse_call("p@0-1,5").map(|c| c.cpus), Ok(vec![0, 1, 5]));
        for bad in [
            "", "@1", "=00", "p@", "p@x", "p@3-1", "p@1,1", "p@0-2,2", "p@64", "p=0",
        ] {
            assert!(parse_call(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_cpus("1,0-1").unwrap_err(),
            "CPU list `1,0-1`: CPU 1 is named twice"
        );
        assert_eq!(
            parse_cpus("64").unwrap_err(),
            "CPU list `64`: CPU 64 is past the last, 63"
        );
    }
}
