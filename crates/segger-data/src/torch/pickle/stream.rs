//! Reading the stream: the byte-level primitives (fixed-size integers, length-prefixed text
//! and bytes, newline-terminated text arguments), the `PROTO` and `FRAME` opcodes, and the
//! opcodes that push constants (`None`, booleans, integers, floats, strings and bytes).

use std::rc::Rc;

use super::{PickleError, StorageSource, Value, Vm};

impl<'a, S: StorageSource> Vm<'a, S> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let data = self.data;
        match self.pos.checked_add(n) {
            Some(end) if end <= data.len() => {
                let s = &data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => self.fail(format!(
                "needs {n} more bytes but the stream ends at byte {}",
                data.len()
            )),
        }
    }

    pub(super) fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn le<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(super) fn len_u32(&mut self) -> Result<usize, PickleError> {
        Ok(u32::from_le_bytes(self.le::<4>()?) as usize)
    }

    pub(super) fn len_u64(&mut self) -> Result<usize, PickleError> {
        let n = u64::from_le_bytes(self.le::<8>()?);
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(super) fn line(&mut self) -> Result<&'a str, PickleError> {
        let data = self.data;
        let rest = &data[self.pos.min(data.len())..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return self.fail("unterminated text argument");
        };
        let s = std::str::from_utf8(&rest[..nl]).or_else(|_| self.fail("text is not UTF-8"))?;
        self.pos += nl + 1;
        Ok(s)
    }

    pub(super) fn text(&mut self, n: usize) -> Result<Rc<str>, PickleError> {
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.into()),
            Err(_) => self.fail("string is not valid UTF-8"),
        }
    }

    pub(super) fn bytes(&mut self, n: usize) -> Result<Rc<[u8]>, PickleError> {
        Ok(self.take(n)?.into())
    }

    /// `PROTO` and `FRAME`.
    pub(super) fn framing_op(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            0x80 => {
                // PROTO
                let p = self.u8()?;
                if p > 5 {
                    return self.fail(format!("unsupported pickle protocol {p}"));
                }
                self.protocol = self.protocol.max(p);
            }
            0x95 => {
                // FRAME: framing is transparent.
                self.take(8)?;
            }
            other => return self.unsupported(other),
        }
        Ok(())
    }

    /// `NONE NEWTRUE NEWFALSE BININT BININT1 BININT2 LONG1 LONG4 BINFLOAT`.
    pub(super) fn scalar_op(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            b'N' => self.push(Value::None),
            0x88 => self.push(Value::Bool(true)),
            0x89 => self.push(Value::Bool(false)),
            b'J' => {
                let v = i32::from_le_bytes(self.le::<4>()?);
                self.push(Value::Int(v as i64));
            }
            b'K' => {
                let v = self.u8()?;
                self.push(Value::Int(v as i64));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.le::<2>()?);
                self.push(Value::Int(v as i64));
            }
            0x8a | 0x8b => {
                // LONG1 / LONG4
                let n = if op == 0x8a {
                    self.u8()? as usize
                } else {
                    let n = i32::from_le_bytes(self.le::<4>()?);
                    if n < 0 {
                        return self.fail("LONG4 with a negative length");
                    }
                    n as usize
                };
                let b = self.take(n)?;
                if n == 0 {
                    self.push(Value::Int(0));
                } else if n <= 8 {
                    let neg = b[n - 1] & 0x80 != 0;
                    let mut a = [if neg { 0xFF } else { 0 }; 8];
                    a[..n].copy_from_slice(b);
                    self.push(Value::Int(i64::from_le_bytes(a)));
                } else {
                    self.push(Value::BigInt(b.into()));
                }
            }
            b'G' => {
                let v = f64::from_be_bytes(self.le::<8>()?);
                self.push(Value::Float(v));
            }
            other => return self.unsupported(other),
        }
        Ok(())
    }

    /// `BINUNICODE SHORT_BINUNICODE BINUNICODE8 BINSTRING SHORT_BINSTRING BINBYTES
    /// SHORT_BINBYTES BINBYTES8`.
    pub(super) fn string_op(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            b'X' => {
                let n = self.len_u32()?;
                let s = self.text(n)?;
                self.push(Value::Str(s));
            }
            0x8c => {
                let n = self.u8()? as usize;
                let s = self.text(n)?;
                self.push(Value::Str(s));
            }
            0x8d => {
                let n = self.len_u64()?;
                let s = self.text(n)?;
                self.push(Value::Str(s));
            }
            b'T' => {
                // BINSTRING (Python 2 str): read as latin-1 text.
                let n = i32::from_le_bytes(self.le::<4>()?);
                if n < 0 {
                    return self.fail("BINSTRING with a negative length");
                }
                let b = self.take(n as usize)?;
                self.push(Value::Str(
                    b.iter().map(|&c| c as char).collect::<String>().into(),
                ));
            }
            b'U' => {
                let n = self.u8()? as usize;
                let b = self.take(n)?;
                self.push(Value::Str(
                    b.iter().map(|&c| c as char).collect::<String>().into(),
                ));
            }
            b'B' => {
                let n = self.len_u32()?;
                let b = self.bytes(n)?;
                self.push(Value::Bytes(b));
            }
            b'C' => {
                let n = self.u8()? as usize;
                let b = self.bytes(n)?;
                self.push(Value::Bytes(b));
            }
            0x8e => {
                let n = self.len_u64()?;
                let b = self.bytes(n)?;
                self.push(Value::Bytes(b));
            }
            other => return self.unsupported(other),
        }
        Ok(())
    }
}
