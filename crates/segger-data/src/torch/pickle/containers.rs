//! Containers: the tuple, list, dict and set opcodes, dict keying (with bounds on the cost of
//! hashing), appending to lists and sets, and the work budget that copying container items is
//! charged against.

use super::values::Key;
use super::{Dict, Obj, PickleError, StorageSource, Value, Vm};

/// Strings and bytes longer than this are keyed by identity in dicts (bounds hashing cost).
const MAX_KEY_STR: usize = 1024;
/// Tuples deeper or longer than this are keyed by identity in dicts.
const MAX_KEY_DEPTH: usize = 3;
const MAX_KEY_TUPLE: usize = 8;

impl<'a, S: StorageSource> Vm<'a, S> {
    pub(super) fn key(&self, v: &Value, depth: usize) -> Key {
        match v {
            Value::None => Key::None,
            Value::Bool(b) => Key::Int(*b as i64),
            Value::Int(i) => Key::Int(*i),
            Value::Float(f) => {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Key::Int(*f as i64)
                } else {
                    Key::Float(f.to_bits())
                }
            }
            Value::Str(s) if s.len() <= MAX_KEY_STR => Key::Str(s.clone()),
            Value::Bytes(b) if b.len() <= MAX_KEY_STR => Key::Bytes(b.clone()),
            Value::Str(s) => Key::Id(s.as_ptr() as usize),
            Value::Bytes(b) => Key::Id(b.as_ptr() as usize),
            Value::BigInt(b) => Key::Bytes(b.clone()),
            Value::Global(g) => Key::Global(format!("{g:?}")),
            Value::Obj(i) => match self.arena.get(*i) {
                Some(Obj::Tuple(t)) if depth < MAX_KEY_DEPTH && t.len() <= MAX_KEY_TUPLE => {
                    Key::Tuple(t.iter().map(|x| self.key(x, depth + 1)).collect())
                }
                _ => Key::Id(*i),
            },
        }
    }

    pub(super) fn dict_set(
        &mut self,
        target: &Value,
        k: Value,
        v: Value,
    ) -> Result<(), PickleError> {
        let key = self.key(&k, 0);
        let Value::Obj(i) = target else {
            return self.fail("SETITEM on a value that is not a dict");
        };
        match self.arena.get_mut(*i) {
            Some(Obj::Dict(d)) => {
                if let Some(&at) = d.index.get(&key) {
                    d.items[at].1 = v;
                } else {
                    d.index.insert(key, d.items.len());
                    d.items.push((k, v));
                }
                Ok(())
            }
            // Opaque dict subclasses keep their items.
            Some(Obj::Object {
                opaque: true,
                items: d,
                ..
            }) => {
                if let Some(&at) = d.index.get(&key) {
                    d.items[at].1 = v;
                } else {
                    d.index.insert(key, d.items.len());
                    d.items.push((k, v));
                }
                Ok(())
            }
            _ => self.fail("SETITEM on a value that is not a dict"),
        }
    }

    pub(super) fn list_extend(
        &mut self,
        target: &Value,
        items: Vec<Value>,
    ) -> Result<(), PickleError> {
        let Value::Obj(i) = target else {
            return self.fail("APPEND on a value that is not a list");
        };
        match self.arena.get_mut(*i) {
            Some(Obj::List(l)) => {
                l.extend(items);
                Ok(())
            }
            Some(Obj::Object { opaque: true, .. }) => Ok(()),
            _ => self.fail("APPEND on a value that is not a list"),
        }
    }

    pub(super) fn set_extend(
        &mut self,
        target: &Value,
        items: Vec<Value>,
    ) -> Result<(), PickleError> {
        let Value::Obj(i) = target else {
            return self.fail("ADDITEMS on a value that is not a set");
        };
        match self.arena.get_mut(*i) {
            Some(Obj::Set(l)) => {
                l.extend(items);
                Ok(())
            }
            Some(Obj::Object { opaque: true, .. }) => Ok(()),
            _ => self.fail("ADDITEMS on a value that is not a set"),
        }
    }

    /// Counts `n` units of copying work against the budget, so that inputs that make the
    /// interpreter copy the same large container over and over fail instead of hanging.
    pub(super) fn charge(&mut self, n: usize) -> Result<(), PickleError> {
        match self.work.checked_sub(n) {
            Some(w) => {
                self.work = w;
                Ok(())
            }
            None => self.fail("the pickle makes the reader copy too much data (refused)"),
        }
    }

    /// A copy of the items of a tuple or list value (charged as work).
    pub(super) fn seq_of(&mut self, v: &Value) -> Result<Option<Vec<Value>>, PickleError> {
        let n = match self.obj_ref(v) {
            Some(Obj::Tuple(t)) | Some(Obj::List(t)) => t.len(),
            _ => return Ok(None),
        };
        self.charge(n)?;
        Ok(match self.obj_ref(v) {
            Some(Obj::Tuple(t)) | Some(Obj::List(t)) => Some(t.clone()),
            _ => None,
        })
    }

    pub(super) fn obj_ref(&self, v: &Value) -> Option<&Obj> {
        match v {
            Value::Obj(i) => self.arena.get(*i),
            _ => None,
        }
    }

    pub(super) fn seq_of_len(&self, v: &Value) -> Option<usize> {
        match self.obj_ref(v) {
            Some(Obj::Tuple(t)) | Some(Obj::List(t)) => Some(t.len()),
            _ => None,
        }
    }

    /// `EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST LIST APPEND APPENDS`.
    pub(super) fn sequence_op(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            b')' => {
                let v = self.alloc(Obj::Tuple(Vec::new()));
                self.push(v);
            }
            b't' => {
                let items = self.pop_mark()?;
                let v = self.alloc(Obj::Tuple(items));
                self.push(v);
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                let v = self.alloc(Obj::Tuple(items));
                self.push(v);
            }
            b']' => {
                let v = self.alloc(Obj::List(Vec::new()));
                self.push(v);
            }
            b'l' => {
                let items = self.pop_mark()?;
                let v = self.alloc(Obj::List(items));
                self.push(v);
            }
            b'a' => {
                let item = self.pop()?;
                let target = self.top()?.clone();
                self.list_extend(&target, vec![item])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                let target = self.top()?.clone();
                self.list_extend(&target, items)?;
            }
            other => return self.unsupported(other),
        }
        Ok(())
    }

    /// `EMPTY_DICT DICT SETITEM SETITEMS EMPTY_SET ADDITEMS FROZENSET`.
    pub(super) fn mapping_op(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            b'}' => {
                let v = self.alloc(Obj::Dict(Dict::default()));
                self.push(v);
            }
            b'd' => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return self.fail("DICT with an odd number of items");
                }
                let target = self.alloc(Obj::Dict(Dict::default()));
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    self.dict_set(&target, k, v)?;
                }
                self.push(target);
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                let target = self.top()?.clone();
                self.dict_set(&target, k, v)?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return self.fail("SETITEMS with an odd number of items");
                }
                let target = self.top()?.clone();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    self.dict_set(&target, k, v)?;
                }
            }
            0x8f => {
                let v = self.alloc(Obj::Set(Vec::new()));
                self.push(v);
            }
            0x90 => {
                let items = self.pop_mark()?;
                let target = self.top()?.clone();
                self.set_extend(&target, items)?;
            }
            0x91 => {
                let items = self.pop_mark()?;
                let v = self.alloc(Obj::Set(items));
                self.push(v);
            }
            other => return self.unsupported(other),
        }
        Ok(())
    }
}
