//! The stack, its marks and the memo: pushing, popping and allocating arena objects, and the
//! `MARK POP POP_MARK DUP` and `BINPUT LONG_BINPUT MEMOIZE BINGET LONG_BINGET` opcodes.

use super::{Obj, PickleError, StorageSource, Value, Vm};

impl<'a, S: StorageSource> Vm<'a, S> {
    pub(super) fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    pub(super) fn alloc(&mut self, o: Obj) -> Value {
        self.arena.push(o);
        Value::Obj(self.arena.len() - 1)
    }

    pub(super) fn pop(&mut self) -> Result<Value, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.fail("stack underflow");
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    pub(super) fn top(&mut self) -> Result<&mut Value, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.fail("stack underflow");
        }
        Ok(self.stack.last_mut().expect("checked above"))
    }

    pub(super) fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let Some(m) = self.marks.pop() else {
            return self.fail("no MARK on the stack");
        };
        Ok(self.stack.split_off(m))
    }

    /// `MARK POP POP_MARK DUP`.
    pub(super) fn stack_op(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                self.push(v);
            }
            other => return self.unsupported(other),
        }
        Ok(())
    }

    /// `BINPUT LONG_BINPUT MEMOIZE BINGET LONG_BINGET`.
    pub(super) fn memo_op(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            b'q' => {
                let i = self.u8()? as u32;
                let v = self.top()?.clone();
                self.memo.insert(i, v);
            }
            b'r' => {
                let i = u32::from_le_bytes(self.le::<4>()?);
                let v = self.top()?.clone();
                self.memo.insert(i, v);
            }
            0x94 => {
                let i = u32::try_from(self.memo.len()).or_else(|_| self.fail("memo is full"))?;
                let v = self.top()?.clone();
                self.memo.insert(i, v);
            }
            b'h' | b'j' => {
                let i = if op == b'h' {
                    self.u8()? as u32
                } else {
                    u32::from_le_bytes(self.le::<4>()?)
                };
                let Some(v) = self.memo.get(&i).cloned() else {
                    return self.fail(format!("memo entry {i} is not set"));
                };
                self.push(v);
            }
            other => return self.unsupported(other),
        }
        Ok(())
    }
}
