//! JIT output as text: each BPF instruction followed by the x86 code it
//! became, decoded by iced-x86 in Intel syntax at guest addresses.
//!
//! ```text
//! ; 3: add %r0, %r1
//! 0000000000600025  48 01 f8              add rax, rdi
//! ```

use std::fmt::Write as _;

use iced_x86::{
    CpuidFeature, Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, Mnemonic,
};

use super::JitOutput;
use crate::insn::Program;

/// Columns the instruction bytes take, so that the assembly lines up for
/// all but the longest encodings.
const BYTES_WIDTH: usize = 24;

/// The x86 code of `output`, assumed to live at `code_addr`, interleaved
/// with the BPF instruction each block came from. Tolerates an output that
/// does not belong to `program`: blocks outside the code are left empty.
pub fn disassemble(program: &Program, output: &JitOutput, code_addr: u64) -> String {
    let mut formatter = formatter();
    let mut out = String::new();
    for (pc, op) in program.iter() {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "; {pc}: {op}");
        let start = output.insn_offsets.get(pc).copied();
        let end = output.insn_offsets.get(pc + op.slots()).copied();
        let (Some(start), Some(end)) = (start, end) else {
            continue;
        };
        let Some(bytes) = output.code.get(start as usize..end as usize) else {
            continue;
        };
        write_code(
            &mut out,
            &mut formatter,
            bytes,
            code_addr.wrapping_add(start.into()),
        );
    }
    out
}

/// The Intel-syntax formatter the listings use.
fn formatter() -> IntelFormatter {
    let mut formatter = IntelFormatter::new();
    let options = formatter.options_mut();
    options.set_hex_prefix("0x");
    options.set_hex_suffix("");
    options.set_uppercase_hex(false);
    options.set_space_after_operand_separator(true);
    options.set_first_operand_char_index(8);
    formatter
}

/// One line per instruction of `bytes`, which start at address `ip`.
fn write_code(out: &mut String, formatter: &mut IntelFormatter, bytes: &[u8], ip: u64) {
    let mut decoder = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    let mut text = String::new();
    let mut position = 0;
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        let len = instruction.len();
        let hex: Vec<String> = bytes
            .get(position..position + len)
            .unwrap_or_default()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        position += len;
        text.clear();
        formatter.format(&instruction, &mut text);
        let _ = writeln!(
            out,
            "{:016x}  {:<width$} {text}",
            instruction.ip(),
            hex.join(" "),
            width = BYTES_WIDTH
        );
    }
}

/// CPU features code that runs in the guest may use: the x86-64 baseline
/// with SSE2 and `rdtsc` (Note [Guest CPUID] in `vmm::vcpu`). Nothing here
/// depends on what the guest's CPUID reports; KVM gates other instructions
/// (`rdtscp`, `rdpid`, XSAVE and AVX, `rdrand`, ...) on it.
const BASELINE: &[CpuidFeature] = &[
    CpuidFeature::INTEL8086,
    CpuidFeature::INTEL186,
    CpuidFeature::INTEL286,
    CpuidFeature::INTEL386,
    CpuidFeature::INTEL486,
    CpuidFeature::X64,
    CpuidFeature::CMOV,
    CpuidFeature::CX8,
    CpuidFeature::SSE,
    CpuidFeature::SSE2,
    CpuidFeature::TSC,
    CpuidFeature::MULTIBYTENOP,
    CpuidFeature::PAUSE,
];

/// Every instruction of `code` (decoded from `ip`) that needs a CPU
/// feature beyond [`BASELINE`], as "address: instruction (features)".
pub fn beyond_baseline(code: &[u8], ip: u64) -> Vec<String> {
    let mut formatter = formatter();
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut found = Vec::new();
    for instruction in &mut decoder {
        let features = instruction.cpuid_features();
        // `tzcnt` is `rep bsf`, which compilers emit for baseline targets:
        // a CPU without BMI1 runs it as `bsf`.
        if instruction.mnemonic() == Mnemonic::Tzcnt
            || features.iter().all(|f| BASELINE.contains(f))
        {
            continue;
        }
        let mut text = String::new();
        formatter.format(&instruction, &mut text);
        found.push(format!("{:#x}: {text} ({features:?})", instruction.ip()));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jit::compile;
    use crate::jit::tests::{CODE_ADDR, setup_config, setup_helpers, setup_program};

    #[test]
    fn listing_interleaves_bpf_and_x86() {
        let program = setup_program("lddw %r1, 0x123456789\nadd %r0, %r1\nexit");
        let output = compile(&program, &setup_config(&setup_helpers)).unwrap();
        let listing = disassemble(&program, &output, CODE_ADDR);
        let headers: Vec<&str> = listing.lines().filter(|l| l.starts_with(';')).collect();
        assert_eq!(
            headers,
            [
                "; 0: lddw %r1, 0x123456789",
                "; 2: add %r0, %r1",
                "; 3: exit"
            ]
        );
        let add = format!(
            "{:016x}  48 01 f8                 add     rax, rdi",
            CODE_ADDR + u64::from(output.insn_offsets[2])
        );
        assert!(listing.lines().any(|l| l == add), "{listing}");
        assert!(listing.contains("mov     rdi, 0x123456789"), "{listing}");
        assert!(listing.trim_end().ends_with("ret"), "{listing}");
    }

    #[test]
    fn foreign_output_does_not_panic() {
        let program = setup_program("mov %r0, 1\nexit");
        let output = JitOutput {
            code: vec![0x90],
            extable: Vec::new(),
            insn_offsets: vec![0, 500],
        };
        let listing = disassemble(&program, &output, 0);
        assert_eq!(listing, "; 0: mov %r0, 1\n; 1: exit\n");
    }
}
