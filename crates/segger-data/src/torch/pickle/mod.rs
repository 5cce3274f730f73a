//! A restricted pickle interpreter for `torch.save` files.
//!
//! Only the opcodes listed in [`Vm::run`] are understood (protocols 2 to 5, binary opcodes;
//! the text opcodes of protocol 0 are refused). Nothing is ever imported or called: a `GLOBAL`
//! names one of the callables in [`Global`], each of which this module re-implements as a
//! data transformation (build a dict, rebuild a tensor from its storage, ...). A global outside
//! the [`Policy`]'s allow-list is refused with an error naming it, or, in the lenient
//! checkpoint policy, kept as an inert placeholder that is never called.
//!
//! Objects live in an arena owned by [`Pickle`], referenced by index, so reference cycles
//! (PyG stores point back at their `HeteroData`) cost nothing and are freed with the arena.
//! Every length read from the stream is checked against the bytes that remain; tensors are
//! checked against their storages and counted against a byte budget, so hostile input gives an
//! error, not a panic, a huge allocation or a hang.

// Layout: this file holds the interpreter state and the dispatch loop; the opcode families
// live in `stream` (reading the stream, protocol and constant opcodes), `stack` (stack, mark
// and memo opcodes), `containers` (tuples, lists, dicts and sets), `globals` (the allow-list),
// `reduce` (globals, calls, object construction and `BUILD`) and `tensor` (dtypes, storages
// and tensors); `values` and `output` hold the value model and the result.

mod containers;
mod globals;
mod output;
mod reduce;
mod stack;
mod stream;
mod tensor;
mod values;

use std::collections::{BTreeSet, HashMap};

pub use globals::{Global, Policy, CHECKPOINT_GLOBALS, TILE_GLOBALS};
pub use output::Pickle;
pub use tensor::{DType, Tensor};
pub use values::{Dict, NdArray, Obj, Value};

/// An error of the interpreter, with the byte offset of the opcode that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickleError {
    /// Offset of the failing opcode in the pickle stream.
    pub offset: usize,
    /// What went wrong.
    pub problem: String,
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "byte {}: {}", self.offset, self.problem)
    }
}

/// Copying work allowed per byte of pickle (plus a fixed allowance): real files copy each
/// item about once.
const WORK_PER_BYTE: usize = 8;
const WORK_BASE: usize = 1 << 20;

/// Where tensor bytes come from: the zip members `data/KEY`.
pub trait StorageSource {
    /// The bytes of storage `key`, or a description of why they are unavailable.
    fn storage(&self, key: &str) -> Result<&[u8], String>;
}

/// The interpreter. Create with [`Vm::new`], run with [`Vm::run`].
pub struct Vm<'a, S: StorageSource> {
    data: &'a [u8],
    pos: usize,
    op_start: usize,
    policy: Policy,
    storages: &'a S,
    budget: usize,
    work: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    arena: Vec<Obj>,
    globals: BTreeSet<String>,
    protocol: u8,
}

impl<'a, S: StorageSource> Vm<'a, S> {
    /// An interpreter over `data` (the `data.pkl` member), taking tensor bytes from
    /// `storages`. At most `budget` bytes of tensor data are materialised in total.
    pub fn new(data: &'a [u8], policy: Policy, storages: &'a S, budget: usize) -> Self {
        Self {
            data,
            pos: 0,
            op_start: 0,
            policy,
            storages,
            budget,
            work: data
                .len()
                .saturating_mul(WORK_PER_BYTE)
                .saturating_add(WORK_BASE),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            arena: Vec::new(),
            globals: BTreeSet::new(),
            protocol: 0,
        }
    }

    fn fail<T>(&self, problem: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError {
            offset: self.op_start,
            problem: problem.into(),
        })
    }

    /// The error for an opcode this interpreter does not understand.
    fn unsupported<T>(&self, op: u8) -> Result<T, PickleError> {
        self.fail(format!(
            "unsupported pickle opcode 0x{op:02x} ({:?})",
            op as char
        ))
    }

    /// Runs the stream to `STOP` and returns the result.
    ///
    /// Opcodes understood: `PROTO FRAME STOP MARK POP POP_MARK DUP NONE NEWTRUE NEWFALSE
    /// BININT BININT1 BININT2 LONG1 LONG4 BINFLOAT BINUNICODE SHORT_BINUNICODE BINUNICODE8
    /// BINSTRING SHORT_BINSTRING BINBYTES SHORT_BINBYTES BINBYTES8 EMPTY_TUPLE TUPLE TUPLE1
    /// TUPLE2 TUPLE3 EMPTY_LIST LIST APPEND APPENDS EMPTY_DICT DICT SETITEM SETITEMS EMPTY_SET
    /// ADDITEMS FROZENSET GLOBAL STACK_GLOBAL REDUCE NEWOBJ NEWOBJ_EX BUILD BINPUT LONG_BINPUT
    /// MEMOIZE BINGET LONG_BINGET BINPERSID`.
    pub fn run(mut self) -> Result<Pickle, PickleError> {
        loop {
            self.op_start = self.pos;
            if self.pos >= self.data.len() {
                return self.fail("stream ends without STOP");
            }
            let op = self.u8()?;
            match op {
                // STOP
                b'.' => return self.stop(),
                // PROTO FRAME
                0x80 | 0x95 => self.framing_op(op)?,
                // MARK POP POP_MARK DUP
                b'(' | b'0' | b'1' | b'2' => self.stack_op(op)?,
                // BINPUT LONG_BINPUT MEMOIZE BINGET LONG_BINGET
                b'q' | b'r' | 0x94 | b'h' | b'j' => self.memo_op(op)?,
                // NONE NEWTRUE NEWFALSE BININT BININT1 BININT2 LONG1 LONG4 BINFLOAT
                b'N' | 0x88 | 0x89 | b'J' | b'K' | b'M' | 0x8a | 0x8b | b'G' => {
                    self.scalar_op(op)?
                }
                // BINUNICODE SHORT_BINUNICODE BINUNICODE8 BINSTRING SHORT_BINSTRING BINBYTES
                // SHORT_BINBYTES BINBYTES8
                b'X' | 0x8c | 0x8d | b'T' | b'U' | b'B' | b'C' | 0x8e => self.string_op(op)?,
                // EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST LIST APPEND APPENDS
                b')' | b't' | 0x85..=0x87 | b']' | b'l' | b'a' | b'e' => self.sequence_op(op)?,
                // EMPTY_DICT DICT SETITEM SETITEMS EMPTY_SET ADDITEMS FROZENSET
                b'}' | b'd' | b's' | b'u' | 0x8f | 0x90 | 0x91 => self.mapping_op(op)?,
                // GLOBAL STACK_GLOBAL REDUCE NEWOBJ NEWOBJ_EX BUILD BINPERSID
                b'c' | 0x93 | b'R' | 0x81 | 0x92 | b'b' | b'Q' => self.object_op(op)?,
                other => return self.unsupported(other),
            }
        }
    }

    /// `STOP`: pops the result and hands over the arena.
    fn stop(mut self) -> Result<Pickle, PickleError> {
        let root = self.pop()?;
        Ok(Pickle {
            arena: self.arena,
            root,
            globals: self.globals,
            protocol: self.protocol,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::tensor::f16_to_f32;
    use super::*;

    struct NoStorage;
    impl StorageSource for NoStorage {
        fn storage(&self, key: &str) -> Result<&[u8], String> {
            Err(format!("no storage {key}"))
        }
    }

    fn run(bytes: &[u8], policy: Policy) -> Result<Pickle, PickleError> {
        Vm::new(bytes, policy, &NoStorage, 1 << 20).run()
    }

    #[test]
    fn dict_of_ints_and_strings() {
        // {'a': 1, 'b': [300, -2]} at protocol 2
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(M,\x01J\xfe\xff\xff\xffeu.";
        let out = run(p, Policy::Tile).unwrap();
        assert_eq!(out.get(&out.root, "a"), Some(&Value::Int(1)));
        let b = out.get(&out.root, "b").unwrap();
        assert_eq!(out.seq(b).unwrap(), &[Value::Int(300), Value::Int(-2)]);
        assert_eq!(out.protocol, 2);
    }

    #[test]
    fn disallowed_global_is_named() {
        let p = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
        let e = run(p, Policy::Tile).unwrap_err();
        assert!(e.problem.contains("`os.system` is not allowed"), "{e}");
        // The lenient policy keeps it inert: nothing runs, the result is an opaque object.
        let out = run(p, Policy::Checkpoint).unwrap();
        let (class, _, opaque) = out.object(&out.root).unwrap();
        assert_eq!((class, opaque), ("os.system", true));
    }

    #[test]
    fn truncated_and_garbage_streams_fail_cleanly() {
        assert!(run(b"", Policy::Tile).is_err());
        assert!(run(b"\x80\x02", Policy::Tile).is_err());
        assert!(run(b"X\xff\xff\xff\xff", Policy::Tile).is_err());
        assert!(run(b"t.", Policy::Tile).is_err());
        assert!(run(b"h\x05.", Policy::Tile).is_err());
        assert!(run(b"\x01", Policy::Tile).is_err());
    }

    /// `pickle.dumps(obj, protocol)` by CPython 3.11 for
    /// `{'i': [0, 1, 255, 256, 65535, 65536, -1, -2**31, 2**31, 2**63-1, -2**63, 2**64],
    /// 'f': [0.5, -1e300], 's': 'h\u00e9llo', 'b': b'\x00\xff', 'e': b'', 't': (1, (2, 3)),
    /// 'set': {1}, 'fs': frozenset([2]), 'n': None, 'tf': [True, False],
    /// 'od': OrderedDict([('a', 1)]), 'long': 'x'*300}`.
    const CPYTHON_P2: &[&str] = &[
        "80027d71002858010000006971015d7102284b004b014bff4d00014dffff4a000001004affffffff",
        "4a000000808a0500000080008a08ffffffffffffff7f8a0800000000000000808a09000000000000",
        "0000016558010000006671035d710428473fe000000000000047fe37e43c8800759c655801000000",
        "737105580600000068c3a96c6c6f71065801000000627107635f636f646563730a656e636f64650a",
        "7108580300000000c3bf710958060000006c6174696e31710a86710b52710c580100000065710d63",
        "5f5f6275696c74696e5f5f0a62797465730a710e2952710f58010000007471104b014b024b038671",
        "1186711258030000007365747113635f5f6275696c74696e5f5f0a7365740a71145d71154b016185",
        "7116527117580200000066737118635f5f6275696c74696e5f5f0a66726f7a656e7365740a71195d",
        "711a4b026185711b52711c58010000006e711d4e58020000007466711e5d711f2888896558020000",
        "006f64712063636f6c6c656374696f6e730a4f726465726564446963740a71212952712258010000",
        "006171234b017358040000006c6f6e677124582c0100007878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "7878787125752e",
    ];
    const CPYTHON_P4: &[&str] = &[
        "8004951f020000000000007d94288c0169945d94284b004b014bff4d00014dffff4a000001004aff",
        "ffffff4a000000808a0500000080008a08ffffffffffffff7f8a0800000000000000808a09000000",
        "000000000001658c0166945d9428473fe000000000000047fe37e43c8800759c658c0173948c0668",
        "c3a96c6c6f948c016294430200ff948c0165944300948c0174944b014b024b03869486948c037365",
        "74948f94284b01908c02667394284b0291948c016e944e8c027466945d94288889658c026f64948c",
        "0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c0161944b01738c",
        "046c6f6e6794582c0100007878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "7878787878787878787878787878787878787878787878787878787878787894752e",
    ];

    fn unhex(parts: &[&str]) -> Vec<u8> {
        let h: String = parts.concat();
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn cpython_pickles_of_protocols_2_and_4() {
        for (proto, hex) in [(2u8, CPYTHON_P2), (4, CPYTHON_P4)] {
            let out = run(&unhex(hex), Policy::Checkpoint).unwrap();
            assert_eq!(out.protocol, proto);
            let r = &out.root;
            let ints: Vec<Value> = out.seq(out.get(r, "i").unwrap()).unwrap().to_vec();
            let want = [
                0i64,
                1,
                255,
                256,
                65535,
                65536,
                -1,
                -(1 << 31),
                1 << 31,
                i64::MAX,
                i64::MIN,
            ];
            for (got, w) in ints.iter().zip(want) {
                assert_eq!(*got, Value::Int(w), "protocol {proto}");
            }
            assert!(matches!(&ints[11], Value::BigInt(b) if b.len() == 9));
            assert_eq!(
                out.seq(out.get(r, "f").unwrap()).unwrap(),
                &[Value::Float(0.5), Value::Float(-1e300)]
            );
            assert_eq!(out.get(r, "s"), Some(&Value::Str("h\u{e9}llo".into())));
            assert_eq!(out.get(r, "b"), Some(&Value::Bytes(vec![0u8, 0xff].into())));
            assert_eq!(out.get(r, "e"), Some(&Value::Bytes(Vec::new().into())));
            let t = out.seq(out.get(r, "t").unwrap()).unwrap();
            assert_eq!(t[0], Value::Int(1));
            assert_eq!(out.seq(&t[1]).unwrap(), &[Value::Int(2), Value::Int(3)]);
            for (k, v) in [("set", 1), ("fs", 2)] {
                match out.obj(out.get(r, k).unwrap()) {
                    Some(Obj::Set(s)) => assert_eq!(s, &[Value::Int(v)], "{k}"),
                    other => panic!("{k}: {other:?}"),
                }
            }
            assert_eq!(out.get(r, "n"), Some(&Value::None));
            assert_eq!(
                out.seq(out.get(r, "tf").unwrap()).unwrap(),
                &[Value::Bool(true), Value::Bool(false)]
            );
            let od = out.get(r, "od").unwrap();
            assert_eq!(out.get(od, "a"), Some(&Value::Int(1)));
            assert!(matches!(out.get(r, "long"), Some(Value::Str(s)) if s.len() == 300));
        }
    }

    #[test]
    fn half_floats_convert() {
        assert_eq!(f16_to_f32(0x3C00), 1.0);
        assert_eq!(f16_to_f32(0xC000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7E00).is_nan());
    }
}
