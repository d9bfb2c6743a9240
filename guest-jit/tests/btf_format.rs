//! Map keys, values and global variables of the sample objects read
//! through the BTF types the loader records for them, as `bpfvisor run
//! --dump-maps` shows them; and the formatter on random, hostile BTF and
//! bytes never panics.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::fs;

use guest_jit::btf::{Btf, SectionVar, TypedValue};
use guest_jit::elf::{MapSpec, Object};
use proptest::prelude::*;

const PROGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../images/progs");

fn object(name: &str) -> Object {
    Object::parse(&fs::read(format!("{PROGS}/{name}")).unwrap()).unwrap()
}

fn map<'a>(object: &'a Object, name: &str) -> &'a MapSpec {
    &object.maps()[object.find_map(name).unwrap()]
}

/// `bytes` as map `name`'s key and value types read them, as text.
fn key_value(object: &Object, name: &str, key: &[u8], value: &[u8]) -> (String, String) {
    let btf = object.btf().unwrap();
    let spec = map(object, name);
    (
        btf.format_value(spec.btf_key_type_id.unwrap(), key)
            .to_string(),
        btf.format_value(spec.btf_value_type_id.unwrap(), value)
            .to_string(),
    )
}

#[test]
fn map_keys_and_values_read_as_their_c_types() {
    let wordcount = object("wordcount.bpf.o");
    let mut word = b"the".to_vec();
    word.resize(16, 0);
    assert_eq!(
        key_value(&wordcount, "counts", &word, &3u64.to_le_bytes()),
        (r#"{s: "the"}"#.into(), "3".into())
    );

    let spinlock = object("spinlock.bpf.o");
    let mut locked = 1u32.to_le_bytes().to_vec();
    locked.extend(0u32.to_le_bytes());
    locked.extend(400_000u64.to_le_bytes());
    assert_eq!(
        key_value(&spinlock, "counter", &[0; 4], &locked),
        ("0".into(), "{lock: {val: 1}, pad: 0, count: 400000}".into())
    );

    let percpu = object("percpu.bpf.o");
    assert_eq!(
        key_value(
            &percpu,
            "per_key",
            &5u32.to_le_bytes(),
            &[9, 0, 0, 0, 0, 0, 0, 0]
        ),
        ("5".into(), "9".into())
    );

    // Inner map templates carry their types; slot maps their key's.
    let mim = object("map_in_map.bpf.o");
    let by_id = map(&mim, "by_id");
    let inner = by_id.inner.as_ref().unwrap();
    let btf = mim.btf().unwrap();
    assert_eq!(
        btf.format_value(inner.btf_value_type_id.unwrap(), &[0xff; 8])
            .to_string(),
        u64::MAX.to_string()
    );
    assert!(by_id.btf_key_type_id.is_some());

    // Legacy definitions have no types.
    let legacy = object("legacy_maps.bpf.o");
    assert!(
        legacy
            .maps()
            .iter()
            .all(|m| m.btf_key_type_id.is_none() && m.btf_value_type_id.is_none())
    );
}

#[test]
fn global_variables_read_by_name_from_their_sections() {
    let mut knobs = object("knobs.bpf.o");
    knobs.set_variable("bias", &(-3i64).to_le_bytes()).unwrap();
    let btf = knobs.btf().unwrap();
    let section = |name: &str| {
        let data = knobs
            .data_sections()
            .iter()
            .find(|d| d.name == name)
            .unwrap();
        let vars: Vec<SectionVar> = knobs
            .variables()
            .iter()
            .filter(|v| v.section == name)
            .map(|v| SectionVar {
                offset: v.offset,
                var_type_id: v.var_type_id,
            })
            .collect();
        btf.format_section(&vars, &data.bytes).to_string()
    };
    assert_eq!(section(".rodata"), "{multiplier: 2, bias: -3, negate: 0}");
    assert_eq!(section(".bss"), "{last: 0}");
    assert_eq!(section(".data.stats"), "{runs: 0}");
}

/// A `.BTF` section of `types` (raw words) and a string table whose
/// offsets 0 to 2 are names.
fn btf_section(types: &[u32]) -> Vec<u8> {
    let strings = b"\0a\0";
    let types: Vec<u8> = types.iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut out = vec![0x9f, 0xeb, 1, 0];
    for w in [24, 0, types.len() as u32, types.len() as u32, 3] {
        out.extend(u32::to_le_bytes(w));
    }
    out.extend(types);
    out.extend(strings);
    out
}

/// One random type: kind, vlen, kind flag, size or type, and its kind
/// data with every name word a valid name.
fn random_type() -> impl Strategy<Value = Vec<u32>> {
    let word = prop_oneof![4 => 0u32..12, 1 => any::<u32>(), 1 => Just(u32::MAX), 2 => 1u32..200];
    (
        1u32..20,
        0u32..4,
        any::<bool>(),
        word.clone(),
        prop::collection::vec(word, 12),
    )
        .prop_map(|(kind, vlen, flag, size_or_type, data)| {
            let stride = match kind {
                4 | 5 | 15 | 19 => 3,
                6 | 13 => 2,
                1 | 14 | 17 => {
                    return [vec![1, (kind << 24), size_or_type], vec![data[0]]].concat();
                }
                3 => return [vec![0, 3 << 24, 0], data[..3].to_vec()].concat(),
                _ => return vec![1, (kind << 24), size_or_type],
            };
            let info = (u32::from(flag) << 31) | (kind << 24) | vlen;
            let mut out = vec![1, info, size_or_type];
            for i in 0..vlen as usize {
                let mut entry = data[i * stride..(i + 1) * stride].to_vec();
                // Struct members: small offsets mostly, so they hit the bytes.
                if matches!(kind, 4 | 5) {
                    entry[2] %= if flag { 1 << 26 } else { 256 };
                }
                entry[0] = (i % 3) as u32;
                out.extend(entry);
            }
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random types, including cycles, huge arrays and members past their
    /// struct, and random bytes, of the type's size and not: formatting
    /// returns, and a value whose type does not fit its bytes is the
    /// bytes themselves.
    #[test]
    fn random_btf_and_bytes_never_panic(
        types in prop::collection::vec(random_type(), 1..12),
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        offsets in prop::collection::vec(0u64..48, 0..4),
    ) {
        let Ok(btf) = Btf::parse(&btf_section(&types.concat())) else {
            return Ok(());
        };
        for id in 0..=types.len() as u32 + 1 {
            let sized = btf
                .type_size(id)
                .ok()
                .and_then(|size| bytes.get(..size as usize));
            for bytes in [Some(&bytes[..]), sized].into_iter().flatten() {
                let value = btf.format_value(id, bytes);
                if btf.type_size(id).map_or(true, |size| size as usize != bytes.len()) {
                    prop_assert_eq!(&value, &TypedValue::Bytes(bytes.to_vec()));
                }
                let _ = value.to_string();
            }
            let vars: Vec<SectionVar> = offsets
                .iter()
                .map(|&offset| SectionVar { offset, var_type_id: id })
                .collect();
            let _ = btf.format_section(&vars, &bytes).to_string();
        }
    }
}
