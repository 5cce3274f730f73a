//! Globals, calls and objects: the `GLOBAL STACK_GLOBAL REDUCE NEWOBJ NEWOBJ_EX BUILD
//! BINPERSID` opcodes. Calling an allowed global re-implements it as data handling (a dict, a
//! set, bytes, a tensor, a numpy array, dtype or scalar, a data-class instance); `BUILD` records
//! an object's state; anything outside the allow-list stays inert.

use std::rc::Rc;

use super::{Dict, Global, NdArray, Obj, PickleError, Policy, StorageSource, Value, Vm};

impl<'a, S: StorageSource> Vm<'a, S> {
    /// `GLOBAL STACK_GLOBAL REDUCE NEWOBJ NEWOBJ_EX BUILD BINPERSID`.
    pub(super) fn object_op(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                let g = self.global(module, name)?;
                self.push(g);
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Str(m), Value::Str(n)) = (module, name) else {
                    return self.fail("STACK_GLOBAL operands are not strings");
                };
                let g = self.global(&m, &n)?;
                self.push(g);
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let v = self.call(callable, args)?;
                self.push(v);
            }
            0x81 => {
                let args = self.pop()?;
                let cls = self.pop()?;
                let v = self.newobj(cls, args)?;
                self.push(v);
            }
            0x92 => {
                let _kwargs = self.pop()?;
                let args = self.pop()?;
                let cls = self.pop()?;
                let v = self.newobj(cls, args)?;
                self.push(v);
            }
            b'b' => {
                let state = self.pop()?;
                let target = self.top()?.clone();
                self.build(&target, state)?;
            }
            b'Q' => {
                let pid = self.pop()?;
                let v = self.persistent_load(pid)?;
                self.push(v);
            }
            other => return self.unsupported(other),
        }
        Ok(())
    }

    fn opaque_class(&self, v: &Value) -> Option<Rc<str>> {
        match self.obj_ref(v) {
            Some(Obj::Object {
                class,
                opaque: true,
                ..
            }) => Some(format!("{class}(...)").into()),
            _ => None,
        }
    }

    /// Allocates an instance of an allowed data class (or, when `opaque`, of a global outside
    /// the allow-list) with its construction arguments and no state yet.
    fn alloc_object(&mut self, class: Rc<str>, args: Value, opaque: bool) -> Value {
        self.alloc(Obj::Object {
            class,
            args,
            state: None,
            opaque,
            items: Dict::default(),
        })
    }

    /// `REDUCE`: applies `callable` to the argument tuple `args`, re-implemented as data
    /// handling for each allowed global.
    fn call(&mut self, callable: Value, args: Value) -> Result<Value, PickleError> {
        // Calling the result of an opaque call stays opaque (lenient policy only).
        if let Some(class) = self.opaque_class(&callable) {
            return Ok(self.alloc_object(class, args, true));
        }
        let Value::Global(g) = callable else {
            return self.fail(format!(
                "REDUCE on something that is not an allowed global ({})",
                describe_plain(&callable)
            ));
        };
        let Some(a) = self.seq_of(&args)? else {
            return self.fail("REDUCE arguments are not a tuple");
        };
        match g {
            Global::OrderedDict | Global::DefaultDict => {
                self.call_dict(g == Global::OrderedDict, &a)
            }
            Global::Set | Global::FrozenSet => self.call_set(&a),
            Global::EmptyBytes => {
                if a.is_empty() {
                    Ok(Value::Bytes(Vec::new().into()))
                } else {
                    self.fail("bytes(...) with arguments is not supported")
                }
            }
            Global::RebuildTensorV2 => self.rebuild_tensor(&a),
            Global::RebuildParameter => match a.first() {
                Some(t @ Value::Obj(_)) if matches!(self.obj_ref(t), Some(Obj::Tensor(_))) => {
                    Ok(t.clone())
                }
                _ => self.fail("_rebuild_parameter: argument 0 is not a tensor"),
            },
            Global::CodecsEncode => self.codecs_encode(&a),
            Global::NpReconstruct => {
                if !matches!(a.first(), Some(Value::Global(Global::NpNdarray))) {
                    return self.fail("_reconstruct: argument 0 is not numpy.ndarray");
                }
                Ok(self.alloc(Obj::NdArray(NdArray {
                    shape: vec![0],
                    descr: String::new(),
                    byteorder: "|".into(),
                    fortran: false,
                    data: Value::None,
                })))
            }
            Global::NpDtype => match a.first() {
                Some(Value::Str(d)) => {
                    let descr = d.to_string();
                    Ok(self.alloc(Obj::NpDtype {
                        descr,
                        byteorder: "|".into(),
                    }))
                }
                _ => self.fail("numpy.dtype: argument 0 is not a str"),
            },
            Global::NpScalar => self.np_scalar(&a, args),
            Global::Class(class) => Ok(self.alloc_object(class, args, false)),
            Global::Opaque(class) => Ok(self.alloc_object(class, args, true)),
            Global::NpNdarray | Global::Storage(_) => {
                self.fail(format!("{g:?} cannot be called in this position"))
            }
        }
    }

    /// `OrderedDict(...)` / `defaultdict(...)`: an empty dict, or for `OrderedDict` one filled
    /// from an iterable of pairs (protocol 2 uses `SETITEMS` instead, but both are possible).
    fn call_dict(&mut self, ordered: bool, a: &[Value]) -> Result<Value, PickleError> {
        let d = Dict::default();
        // OrderedDict(iterable_of_pairs) is possible; protocol 2 uses SETITEMS instead.
        if ordered {
            let pairs = match a.first() {
                Some(p) => self.seq_of(p)?,
                None => None,
            };
            if let Some(pairs) = pairs {
                let target = self.alloc(Obj::Dict(d));
                for p in pairs {
                    match self.seq_of(&p)?.as_deref() {
                        Some([k, v]) => self.dict_set(&target, k.clone(), v.clone())?,
                        _ => return self.fail("OrderedDict item is not a pair"),
                    }
                }
                return Ok(target);
            }
        }
        Ok(self.alloc(Obj::Dict(d)))
    }

    /// `set(...)` / `frozenset(...)`: a set holding a copy of the items of the list, tuple or
    /// set argument (charged as work), or an empty one.
    fn call_set(&mut self, a: &[Value]) -> Result<Value, PickleError> {
        let items = match a.first() {
            None => Vec::new(),
            Some(v) => {
                let n = match self.obj_ref(v) {
                    Some(Obj::List(l)) | Some(Obj::Tuple(l)) | Some(Obj::Set(l)) => l.len(),
                    _ => return self.fail("set() argument is not a list"),
                };
                self.charge(n)?;
                match self.obj_ref(v) {
                    Some(Obj::List(l)) | Some(Obj::Tuple(l)) | Some(Obj::Set(l)) => l.clone(),
                    _ => Vec::new(),
                }
            }
        };
        Ok(self.alloc(Obj::Set(items)))
    }

    /// `_codecs.encode(str, "latin1")`: how protocol 2 writes `bytes`.
    fn codecs_encode(&mut self, a: &[Value]) -> Result<Value, PickleError> {
        match a {
            [Value::Str(s), Value::Str(enc)]
                if matches!(&**enc, "latin1" | "latin-1" | "iso-8859-1") =>
            {
                let mut out = Vec::with_capacity(s.len());
                for c in s.chars() {
                    let c = c as u32;
                    if c > 0xFF {
                        return self.fail("_codecs.encode: character outside latin-1");
                    }
                    out.push(c as u8);
                }
                Ok(Value::Bytes(out.into()))
            }
            _ => self.fail("_codecs.encode: only (str, 'latin1') is supported"),
        }
    }

    /// `numpy.core.multiarray.scalar(dtype, bytes)`: a plain float, int or bool for the
    /// little-endian `f8 f4 i8 i4 b1` scalars; any other scalar is an error, or an inert
    /// object under the lenient checkpoint policy (`args` are its construction arguments).
    fn np_scalar(&mut self, a: &[Value], args: Value) -> Result<Value, PickleError> {
        let (descr, bo) = match a.first().and_then(|d| self.obj_ref(d)) {
            Some(Obj::NpDtype { descr, byteorder }) => (descr.clone(), byteorder.clone()),
            _ => return self.fail("numpy scalar: argument 0 is not a dtype"),
        };
        let Some(Value::Bytes(b)) = a.get(1) else {
            return self.fail("numpy scalar: argument 1 is not bytes");
        };
        if bo == ">" {
            return self.fail("numpy scalar: big-endian data is not supported");
        }
        let code = descr.trim_start_matches(['<', '>', '=', '|']);
        let v = match (code, b.len()) {
            ("f8", 8) => Value::Float(f64::from_le_bytes(b[..8].try_into().unwrap())),
            ("f4", 4) => Value::Float(f32::from_le_bytes(b[..4].try_into().unwrap()) as f64),
            ("i8", 8) => Value::Int(i64::from_le_bytes(b[..8].try_into().unwrap())),
            ("i4", 4) => Value::Int(i32::from_le_bytes(b[..4].try_into().unwrap()) as i64),
            ("b1", 1) => Value::Bool(b[0] != 0),
            // Checkpoints may hold any numpy scalar in irrelevant places: keep it inert.
            _ if self.policy == Policy::Checkpoint => {
                let class = format!("numpy scalar {descr}").into();
                return Ok(self.alloc_object(class, args, true));
            }
            _ => {
                return self.fail(format!(
                    "numpy scalar of dtype {descr} with {} bytes is not supported",
                    b.len()
                ))
            }
        };
        Ok(v)
    }
    pub(super) fn newobj(&mut self, cls: Value, args: Value) -> Result<Value, PickleError> {
        match cls {
            Value::Global(Global::Class(class)) => Ok(self.alloc(Obj::Object {
                class,
                args,
                state: None,
                opaque: false,
                items: Dict::default(),
            })),
            Value::Global(Global::Opaque(class)) => Ok(self.alloc(Obj::Object {
                class,
                args,
                state: None,
                opaque: true,
                items: Dict::default(),
            })),
            Value::Global(Global::OrderedDict | Global::DefaultDict) => {
                Ok(self.alloc(Obj::Dict(Dict::default())))
            }
            Value::Global(Global::Set | Global::FrozenSet) => Ok(self.alloc(Obj::Set(Vec::new()))),
            other => self.fail(format!(
                "NEWOBJ on something that is not an allowed class ({})",
                describe_plain(&other)
            )),
        }
    }

    pub(super) fn build(&mut self, target: &Value, state: Value) -> Result<(), PickleError> {
        let Value::Obj(i) = target else {
            return self.fail(format!(
                "BUILD on a plain value ({})",
                describe_plain(target)
            ));
        };
        let i = *i;
        // Prepare what needs a shared borrow of the arena before taking the mutable one.
        let st = self.seq_of(&state)?;
        match self.arena.get(i) {
            Some(Obj::NdArray(_)) => {
                // (version, shape, dtype, is_fortran, data)
                let Some(st) = st.filter(|s| s.len() == 5) else {
                    return self.fail("numpy array state is not a 5-tuple");
                };
                let shape = self.usize_tuple(&st[1], "numpy array shape")?;
                let (descr, byteorder) = match self.obj_ref(&st[2]) {
                    Some(Obj::NpDtype { descr, byteorder }) => (descr.clone(), byteorder.clone()),
                    _ => return self.fail("numpy array state: item 2 is not a dtype"),
                };
                let fortran = matches!(st[3], Value::Bool(true));
                let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                let ok = match (&st[4], n) {
                    (_, None) => false,
                    (Value::Bytes(_), Some(_)) => true,
                    (v, Some(n)) => self.seq_of_len(v) == Some(n),
                };
                if !ok {
                    return self.fail(format!(
                        "numpy array data does not match its shape {shape:?}"
                    ));
                }
                self.arena[i] = Obj::NdArray(NdArray {
                    shape,
                    descr,
                    byteorder,
                    fortran,
                    data: st[4].clone(),
                });
                Ok(())
            }
            Some(Obj::NpDtype { descr, .. }) => {
                // (version, byteorder, subarray, names, fields, elsize, alignment, flags)
                let bo = match st.as_deref().and_then(|s| s.get(1)) {
                    Some(Value::Str(b)) => b.to_string(),
                    _ => return self.fail("numpy dtype state has no byte order"),
                };
                let descr = descr.clone();
                self.arena[i] = Obj::NpDtype {
                    descr,
                    byteorder: bo,
                };
                Ok(())
            }
            Some(Obj::Object { .. }) => {
                if let Some(Obj::Object { state: s, .. }) = self.arena.get_mut(i) {
                    *s = Some(state);
                }
                Ok(())
            }
            // Dict subclasses and parameters may carry an instance __dict__; it is irrelevant.
            Some(Obj::Dict(_)) | Some(Obj::Tensor(_)) | Some(Obj::Set(_)) => Ok(()),
            _ => self.fail("BUILD on an object that has no state"),
        }
    }
}

fn describe_plain(v: &Value) -> String {
    match v {
        Value::Global(Global::Opaque(n)) | Value::Global(Global::Class(n)) => n.to_string(),
        Value::Global(g) => format!("{g:?}"),
        Value::Obj(_) => "an object".into(),
        Value::Str(_) => "a str".into(),
        Value::Int(_) => "an int".into(),
        other => format!("{other:?}"),
    }
}
