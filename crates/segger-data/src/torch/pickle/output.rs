//! The result of a run: [`Pickle`], the object arena with the root value and the globals the
//! stream named, and the accessors the tile and checkpoint readers use to walk it.

use std::collections::BTreeSet;

use super::values::Key;
use super::{Dict, Obj, Tensor, Value};

/// The result of running a pickle: the arena, the root value and the globals it named.
#[derive(Debug, Clone)]
pub struct Pickle {
    pub(super) arena: Vec<Obj>,
    /// The unpickled value.
    pub root: Value,
    /// Every global the stream named, as `module.name`.
    pub globals: BTreeSet<String>,
    /// The highest protocol announced by `PROTO` (0 when absent).
    pub protocol: u8,
}

impl Pickle {
    /// The arena object a value refers to.
    pub fn obj(&self, v: &Value) -> Option<&Obj> {
        match v {
            Value::Obj(i) => self.arena.get(*i),
            _ => None,
        }
    }

    /// The dict a value refers to (also the items of an opaque dict subclass that has some).
    pub fn dict(&self, v: &Value) -> Option<&Dict> {
        match self.obj(v) {
            Some(Obj::Dict(d)) => Some(d),
            Some(Obj::Object { items, .. }) if !items.items.is_empty() => Some(items),
            _ => None,
        }
    }

    /// The items of a tuple or list value.
    pub fn seq(&self, v: &Value) -> Option<&[Value]> {
        match self.obj(v) {
            Some(Obj::Tuple(t)) | Some(Obj::List(t)) => Some(t),
            _ => None,
        }
    }

    /// The tensor a value refers to.
    pub fn tensor(&self, v: &Value) -> Option<&Tensor> {
        match self.obj(v) {
            Some(Obj::Tensor(t)) => Some(t),
            _ => None,
        }
    }

    /// Looks up a string key in a dict value.
    pub fn get<'p>(&'p self, dict: &Value, key: &str) -> Option<&'p Value> {
        let d = self.dict(dict)?;
        d.index
            .get(&Key::Str(key.into()))
            .map(|&i| &d.items[i].1)
            .or_else(|| {
                d.items
                    .iter()
                    .find(|(k, _)| matches!(k, Value::Str(s) if &**s == key))
                    .map(|(_, v)| v)
            })
    }

    /// The class name and `BUILD` state of an object value.
    pub fn object<'p>(&'p self, v: &Value) -> Option<(&'p str, Option<&'p Value>, bool)> {
        match self.obj(v) {
            Some(Obj::Object {
                class,
                state,
                opaque,
                ..
            }) => Some((class, state.as_ref(), *opaque)),
            _ => None,
        }
    }

    /// A short description of a value for error messages (`str`, `tensor float32 [3, 2]`,
    /// `opaque object torch.fx...`, ...).
    pub fn describe(&self, v: &Value) -> String {
        match v {
            Value::None => "None".into(),
            Value::Bool(b) => format!("bool {b}"),
            Value::Int(i) => format!("int {i}"),
            Value::BigInt(_) => "big int".into(),
            Value::Float(f) => format!("float {f}"),
            Value::Str(s) => format!("str {:?}", truncate(s, 40)),
            Value::Bytes(b) => format!("bytes[{}]", b.len()),
            Value::Global(g) => format!("global {g:?}"),
            Value::Obj(_) => match self.obj(v) {
                Some(Obj::Tuple(t)) => format!("tuple of {}", t.len()),
                Some(Obj::List(t)) => format!("list of {}", t.len()),
                Some(Obj::Dict(d)) => format!("dict of {}", d.items.len()),
                Some(Obj::Set(s)) => format!("set of {}", s.len()),
                Some(Obj::Object { class, opaque, .. }) => {
                    if *opaque {
                        format!("object of the non-allowed global {class}")
                    } else {
                        format!("{class} object")
                    }
                }
                Some(Obj::Storage { dtype, .. }) => format!("{} storage", dtype.name()),
                Some(Obj::Tensor(t)) => format!("tensor {} {:?}", t.dtype.name(), t.shape),
                Some(Obj::NdArray(a)) => format!("numpy array {} {:?}", a.descr, a.shape),
                Some(Obj::NpDtype { descr, .. }) => format!("numpy dtype {descr}"),
                None => "dangling reference".into(),
            },
        }
    }

    /// The strings of a numpy object array or a list/tuple of `str`; `None` for anything
    /// else.
    pub fn strings(&self, v: &Value) -> Option<Vec<String>> {
        let items = match self.obj(v)? {
            Obj::NdArray(a) => {
                if !a.descr.starts_with('O') {
                    return None;
                }
                let items = self.seq(&a.data)?;
                let n: usize = a.shape.iter().product();
                if items.len() != n {
                    return None;
                }
                items
            }
            Obj::List(t) | Obj::Tuple(t) => t,
            _ => return None,
        };
        items
            .iter()
            .map(|x| match x {
                Value::Str(s) => Some(s.to_string()),
                _ => None,
            })
            .collect()
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n).collect();
        format!("{t}...")
    }
}
