//! Writing float32 state dicts in the `torch.save` format, so that `torch.load` (and this
//! crate's reader) can open them: a stored zip archive with a protocol-2 pickle of an
//! `OrderedDict` of tensors rebuilt by `torch._utils._rebuild_tensor_v2` over
//! `torch.FloatStorage`s, one storage per tensor.

use super::zip::ZipWriter;

struct Pickler {
    out: Vec<u8>,
    memo: u32,
}

impl Pickler {
    fn put(&mut self) {
        if self.memo < 256 {
            self.out.extend_from_slice(&[b'q', self.memo as u8]);
        } else {
            self.out.push(b'r');
            self.out.extend_from_slice(&self.memo.to_le_bytes());
        }
        self.memo += 1;
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend_from_slice(module.as_bytes());
        self.out.push(b'\n');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'\n');
        self.put();
    }

    fn str(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
        self.put();
    }

    fn int(&mut self, v: u64) {
        if v < 256 {
            self.out.extend_from_slice(&[b'K', v as u8]);
        } else if v < 65536 {
            self.out.push(b'M');
            self.out.extend_from_slice(&(v as u16).to_le_bytes());
        } else if v < (1 << 31) {
            self.out.push(b'J');
            self.out.extend_from_slice(&(v as u32).to_le_bytes());
        } else {
            // LONG1 with 9 bytes keeps the sign bit clear for any u64.
            self.out.extend_from_slice(&[0x8a, 9]);
            self.out.extend_from_slice(&v.to_le_bytes());
            self.out.push(0);
        }
    }

    fn int_tuple(&mut self, v: &[usize]) {
        if v.is_empty() {
            self.out.push(b')');
            return;
        }
        self.out.push(b'(');
        for &x in v {
            self.int(x as u64);
        }
        self.out.push(b't');
        self.put();
    }
}

/// Serialises `(name, shape, values)` float32 tensors as a `torch.save`d `OrderedDict`.
/// `archive` names the archive's top-level directory (torch uses the file stem). Fails when a
/// tensor's values do not fill its shape, or the archive exceeds 4 GiB.
pub fn state_dict_bytes(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    archive: &str,
) -> Result<Vec<u8>, String> {
    let mut p = Pickler {
        out: vec![0x80, 2],
        memo: 0,
    };
    p.global("collections", "OrderedDict");
    p.out.extend_from_slice(b")R");
    p.put();
    let mut storages: Vec<Vec<u8>> = Vec::with_capacity(tensors.len());
    if !tensors.is_empty() {
        p.out.push(b'(');
    }
    for (name, shape, values) in tensors {
        let numel: usize = shape.iter().product();
        if numel != values.len() {
            return Err(format!(
                "{name}: {} values do not fill the shape {shape:?}",
                values.len()
            ));
        }
        let key = storages.len().to_string();
        storages.push(values.iter().flat_map(|v| v.to_le_bytes()).collect());
        let mut stride = vec![1usize; shape.len()];
        for k in (0..shape.len().saturating_sub(1)).rev() {
            stride[k] = stride[k + 1] * shape[k + 1];
        }
        p.str(name);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.out.extend_from_slice(b"((");
        p.str("storage");
        p.global("torch", "FloatStorage");
        p.str(&key);
        p.str("cpu");
        p.int(numel as u64);
        p.out.push(b't');
        p.put();
        p.out.push(b'Q');
        p.int(0);
        p.int_tuple(shape);
        p.int_tuple(&stride);
        p.out.push(0x89); // requires_grad = False
        p.global("collections", "OrderedDict");
        p.out.extend_from_slice(b")R");
        p.put();
        p.out.push(b't');
        p.put();
        p.out.push(b'R');
        p.put();
    }
    if !tensors.is_empty() {
        p.out.push(b'u');
    }
    p.out.push(b'.');

    let mut w = ZipWriter::new();
    let add = |w: &mut ZipWriter, name: &str, data: &[u8]| {
        w.add(&format!("{archive}/{name}"), data)
            .map_err(|e| e.to_string())
    };
    add(&mut w, "data.pkl", &p.out)?;
    add(&mut w, ".format_version", b"1")?;
    add(&mut w, ".storage_alignment", b"64")?;
    add(&mut w, "byteorder", b"little")?;
    for (i, s) in storages.iter().enumerate() {
        add(&mut w, &format!("data/{i}"), s)?;
    }
    add(&mut w, "version", b"3\n")?;
    w.finish().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::torch::{parse_torch, Policy};
    use std::path::Path;

    #[test]
    fn written_state_dicts_read_back() {
        let t = vec![
            (
                "a.weight".to_string(),
                vec![2, 3],
                (0..6).map(|i| i as f32).collect(),
            ),
            ("b".to_string(), vec![], vec![7.5]),
            ("big".to_string(), vec![70_000], vec![1.0; 70_000]),
        ];
        let bytes = state_dict_bytes(&t, "archive").unwrap();
        let a = parse_torch(Path::new("x.pt"), &bytes, Policy::Tile).unwrap();
        let p = &a.pickle;
        for (name, shape, values) in &t {
            let v = p.get(&p.root, name).unwrap();
            let tensor = p.tensor(v).unwrap();
            assert_eq!(&tensor.shape, shape);
            assert_eq!(&tensor.to_f32(), values);
        }
        assert!(state_dict_bytes(&[("x".into(), vec![2], vec![1.0])], "a").is_err());
        let empty = state_dict_bytes(&[], "a").unwrap();
        parse_torch(Path::new("e.pt"), &empty, Policy::Tile).unwrap();
    }
}
