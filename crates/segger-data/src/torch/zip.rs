//! A minimal, bounds-checked reader and writer for the zip archives `torch.save` produces.
//!
//! `torch.save` writes every member *stored* (no compression), aligned to 64 bytes, with a
//! central directory and, for archives past 4 GiB, zip64 records. This module reads exactly
//! that: stored members, zip32 or zip64 directories, CRC-32 checked on access. Compressed or
//! encrypted members are refused with an error that says so. Every offset and length read from
//! the file is checked against the file's size before use, so a damaged archive gives an error,
//! never a panic or an oversized allocation.

use std::collections::HashMap;
use std::ops::Range;

/// What is wrong with an archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZipError {
    /// A record that starts at byte `at` runs past the end of the file.
    #[error("record at byte {at} runs past the end of the file")]
    Truncated {
        /// Where the record starts.
        at: usize,
    },
    /// The archive's directory (end record, zip64 records, central directory) is missing or
    /// damaged, or the file is not a zip archive.
    #[error("{problem}")]
    Directory {
        /// What is wrong.
        problem: String,
    },
    /// A member is damaged, or stored in a way this reader does not read (compressed,
    /// encrypted).
    #[error("member {name:?}: {problem}")]
    Member {
        /// The member's name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The archive is too large for the writer (zip32 only).
    #[error("archive too large for this writer (zip32 only)")]
    TooLarge,
}

/// A [`ZipError::Directory`].
fn err<T>(problem: impl Into<String>) -> Result<T, ZipError> {
    Err(ZipError::Directory {
        problem: problem.into(),
    })
}

/// A [`ZipError::Member`].
fn member_err<T>(name: &str, problem: impl Into<String>) -> Result<T, ZipError> {
    Err(ZipError::Member {
        name: name.to_string(),
        problem: problem.into(),
    })
}

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;

fn u16_at(b: &[u8], at: usize) -> Result<u16, ZipError> {
    match b.get(at..at.saturating_add(2)) {
        Some(s) if s.len() == 2 => Ok(u16::from_le_bytes([s[0], s[1]])),
        _ => Err(ZipError::Truncated { at }),
    }
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, ZipError> {
    match b.get(at..at.saturating_add(4)) {
        Some(s) if s.len() == 4 => Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]])),
        _ => Err(ZipError::Truncated { at }),
    }
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, ZipError> {
    match b.get(at..at.saturating_add(8)) {
        Some(s) if s.len() == 8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            Ok(u64::from_le_bytes(a))
        }
        _ => Err(ZipError::Truncated { at }),
    }
}

/// The CRC-32 (IEEE 802.3, as used by zip) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = table[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

/// One member of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    /// The member's name, as stored (for torch files: `ARCHIVE/data.pkl`, `ARCHIVE/data/0`, ...).
    pub name: String,
    /// Where the member's bytes lie in the archive.
    pub data: Range<usize>,
    /// The CRC-32 the directory records.
    pub crc: u32,
}

/// The directory of a stored-only zip archive held in memory.
#[derive(Debug, Clone)]
pub struct ZipArchive<'a> {
    bytes: &'a [u8],
    entries: Vec<ZipEntry>,
    by_name: HashMap<String, usize>,
}

impl<'a> ZipArchive<'a> {
    /// Parses the central directory of `bytes`. Members are located and checked for size, not
    /// yet read.
    pub fn new(bytes: &'a [u8]) -> Result<Self, ZipError> {
        let len = bytes.len();
        if len < 22 {
            return err(format!(
                "{len} bytes is too short for a zip archive (torch.save files are zip archives)"
            ));
        }
        let eocd = find_eocd(bytes)?;
        let (count, cd_size, cd_offset) = directory_extent(bytes, eocd)?;
        let cd_start = usize::try_from(cd_offset).unwrap_or(usize::MAX);
        let cd_end = cd_start.saturating_add(usize::try_from(cd_size).unwrap_or(usize::MAX));
        if cd_end > len {
            return err(format!(
                "central directory (bytes {cd_offset}..+{cd_size}) lies outside the {len}-byte file"
            ));
        }
        // Each directory record takes at least 46 bytes: a count beyond that is corrupt.
        if count > (cd_size / 46) {
            return err(format!(
                "central directory claims {count} members in {cd_size} bytes"
            ));
        }
        let mut entries = Vec::with_capacity(count as usize);
        let mut by_name = HashMap::with_capacity(count as usize);
        let mut p = cd_start;
        for i in 0..count {
            let (entry, next) = central_record(bytes, p, i, cd_end)?;
            if by_name.insert(entry.name.clone(), entries.len()).is_some() {
                return member_err(&entry.name, "appears twice in the central directory");
            }
            entries.push(entry);
            p = next;
        }
        Ok(Self {
            bytes,
            entries,
            by_name,
        })
    }

    /// The members, in directory order.
    pub fn entries(&self) -> &[ZipEntry] {
        &self.entries
    }

    /// The member called `name`, if any.
    pub fn entry(&self, name: &str) -> Option<&ZipEntry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    /// The bytes of member `name`, after checking its CRC-32. `Ok(None)` when there is no
    /// such member.
    pub fn read(&self, name: &str) -> Result<Option<&'a [u8]>, ZipError> {
        let Some(e) = self.entry(name) else {
            return Ok(None);
        };
        let data = &self.bytes[e.data.clone()];
        let crc = crc32(data);
        if crc != e.crc {
            return member_err(
                name,
                format!("damaged: CRC-32 {crc:08x}, directory says {:08x}", e.crc),
            );
        }
        Ok(Some(data))
    }
}

/// The offset of the end-of-central-directory record: 22 bytes plus a comment of up to 65535
/// bytes, which must end the file. `bytes` holds at least 22 bytes.
fn find_eocd(bytes: &[u8]) -> Result<usize, ZipError> {
    let len = bytes.len();
    let lowest = len.saturating_sub(22 + 0xFFFF);
    let mut eocd = None;
    let mut at = len - 22;
    loop {
        if u32_at(bytes, at)? == EOCD_SIG {
            let comment = u16_at(bytes, at + 20)? as usize;
            if at + 22 + comment == len {
                eocd = Some(at);
                break;
            }
        }
        if at == lowest {
            break;
        }
        at -= 1;
    }
    let Some(eocd) = eocd else {
        return err("no end-of-central-directory record: not a zip archive, or truncated");
    };
    Ok(eocd)
}

/// The member count, size and offset of the central directory, from the record at `eocd` or,
/// when its fields are saturated, from the zip64 record its locator points at.
fn directory_extent(bytes: &[u8], eocd: usize) -> Result<(u64, u64, u64), ZipError> {
    let mut count = u16_at(bytes, eocd + 10)? as u64;
    let mut cd_size = u32_at(bytes, eocd + 12)? as u64;
    let mut cd_offset = u32_at(bytes, eocd + 16)? as u64;
    if count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
        // zip64: a locator sits right before the record and points at the zip64 record.
        let loc = eocd.checked_sub(20).ok_or_else(|| ZipError::Directory {
            problem: "zip64 locator is missing".into(),
        })?;
        if u32_at(bytes, loc)? != ZIP64_LOCATOR_SIG {
            return err("zip64 fields are set but the zip64 locator is missing");
        }
        let rec = usize::try_from(u64_at(bytes, loc + 8)?).map_err(|_| ZipError::Directory {
            problem: "zip64 record offset is out of range".into(),
        })?;
        if u32_at(bytes, rec)? != ZIP64_EOCD_SIG {
            return err(format!(
                "no zip64 end-of-central-directory record at byte {rec}"
            ));
        }
        count = u64_at(bytes, rec + 32)?;
        cd_size = u64_at(bytes, rec + 40)?;
        cd_offset = u64_at(bytes, rec + 48)?;
    }
    Ok((count, cd_size, cd_offset))
}

/// Parses central directory record `i` at byte `p` (the directory ends at `cd_end`) and
/// locates its member's bytes through the local header; returns the entry and the offset of
/// the next record.
fn central_record(
    bytes: &[u8],
    p: usize,
    i: u64,
    cd_end: usize,
) -> Result<(ZipEntry, usize), ZipError> {
    let len = bytes.len();
    if p.saturating_add(46) > cd_end || u32_at(bytes, p)? != CENTRAL_SIG {
        return err(format!(
            "central directory record {i} is damaged (byte {p})"
        ));
    }
    let flags = u16_at(bytes, p + 8)?;
    let method = u16_at(bytes, p + 10)?;
    let crc = u32_at(bytes, p + 16)?;
    let mut csize = u32_at(bytes, p + 20)? as u64;
    let mut usize_ = u32_at(bytes, p + 24)? as u64;
    let name_len = u16_at(bytes, p + 28)? as usize;
    let extra_len = u16_at(bytes, p + 30)? as usize;
    let comment_len = u16_at(bytes, p + 32)? as usize;
    let mut local = u32_at(bytes, p + 42)? as u64;
    let name_start = p + 46;
    let extra_start = name_start + name_len;
    let next = extra_start + extra_len + comment_len;
    if next > cd_end {
        return err(format!(
            "central directory record {i} runs past the directory"
        ));
    }
    let name = String::from_utf8_lossy(&bytes[name_start..extra_start]).into_owned();
    zip64_extra(
        bytes,
        &name,
        extra_start..extra_start + extra_len,
        [&mut usize_, &mut csize, &mut local],
    )?;
    if flags & 0x1 != 0 {
        return member_err(&name, "encrypted: not supported");
    }
    if method != 0 {
        return member_err(
            &name,
            format!(
                "compressed (method {method}); torch.save stores members uncompressed and only \
                 that is supported"
            ),
        );
    }
    if csize != usize_ {
        return member_err(
            &name,
            format!("stored size {csize} differs from its size {usize_}"),
        );
    }
    let local = usize::try_from(local).unwrap_or(usize::MAX);
    if local.saturating_add(30) > len || u32_at(bytes, local)? != LOCAL_SIG {
        return member_err(&name, format!("no local header at byte {local}"));
    }
    let lname = u16_at(bytes, local + 26)? as usize;
    let lextra = u16_at(bytes, local + 28)? as usize;
    let start = local + 30 + lname + lextra;
    let end = start.saturating_add(usize::try_from(csize).unwrap_or(usize::MAX));
    if end > len {
        return member_err(
            &name,
            format!("its {csize} bytes at byte {start} run past the end of the {len}-byte file"),
        );
    }
    let entry = ZipEntry {
        name,
        data: start..end,
        crc,
    };
    Ok((entry, next))
}

/// Applies the zip64 extended information of member `name`'s extra fields (`extra`, a range
/// of `bytes`): each of `fields` (size, stored size, local header offset) that is saturated
/// at 0xFFFFFFFF is replaced, in order, by the next 64-bit value.
fn zip64_extra(
    bytes: &[u8],
    name: &str,
    extra: Range<usize>,
    mut fields: [&mut u64; 3],
) -> Result<(), ZipError> {
    // zip64 extended information: the 0xFFFFFFFF fields follow in order.
    let mut e = extra.start;
    let extra_end = extra.end;
    while e + 4 <= extra_end {
        let id = u16_at(bytes, e)?;
        let sz = u16_at(bytes, e + 2)? as usize;
        let body = e + 4;
        if body + sz > extra_end {
            return member_err(name, "extra field runs past its record");
        }
        if id == 0x0001 {
            let mut q = body;
            for field in fields.iter_mut() {
                if **field == 0xFFFF_FFFF {
                    if q + 8 > body + sz {
                        return member_err(name, "zip64 field is too short");
                    }
                    **field = u64_at(bytes, q)?;
                    q += 8;
                }
            }
        }
        e = body + sz;
    }
    Ok(())
}

/// Builds a stored-only zip archive in memory, with member data aligned to 64 bytes as
/// `torch.save` does (so `torch.load` can memory-map it). Used to write torch-compatible files
/// and test inputs. Archives past 4 GiB are not supported.
#[derive(Debug, Default)]
pub struct ZipWriter {
    out: Vec<u8>,
    central: Vec<u8>,
    count: u16,
}

impl ZipWriter {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a member. Fails when the archive would exceed the zip32 limits.
    pub fn add(&mut self, name: &str, data: &[u8]) -> Result<(), ZipError> {
        let offset = self.out.len();
        if self.count == u16::MAX
            || name.len() > 0xFFFF
            || offset + 30 + name.len() + 4 + 64 + data.len() > u32::MAX as usize
        {
            return Err(ZipError::TooLarge);
        }
        let crc = crc32(data);
        let header_end = offset + 30 + name.len() + 4;
        let pad = (64 - header_end % 64) % 64;
        let extra_len = 4 + pad;
        let size = data.len() as u32;
        let o = &mut self.out;
        o.extend_from_slice(&LOCAL_SIG.to_le_bytes());
        o.extend_from_slice(&20u16.to_le_bytes()); // version needed
        o.extend_from_slice(&0u16.to_le_bytes()); // flags
        o.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        o.extend_from_slice(&0u32.to_le_bytes()); // time, date
        o.extend_from_slice(&crc.to_le_bytes());
        o.extend_from_slice(&size.to_le_bytes());
        o.extend_from_slice(&size.to_le_bytes());
        o.extend_from_slice(&(name.len() as u16).to_le_bytes());
        o.extend_from_slice(&(extra_len as u16).to_le_bytes());
        o.extend_from_slice(name.as_bytes());
        o.extend_from_slice(&0x4246u16.to_le_bytes()); // "FB": torch's padding field
        o.extend_from_slice(&(pad as u16).to_le_bytes());
        o.extend(std::iter::repeat_n(b'Z', pad));
        o.extend_from_slice(data);

        let c = &mut self.central;
        c.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
        c.extend_from_slice(&20u16.to_le_bytes()); // version made by
        c.extend_from_slice(&20u16.to_le_bytes()); // version needed
        c.extend_from_slice(&0u16.to_le_bytes()); // flags
        c.extend_from_slice(&0u16.to_le_bytes()); // method
        c.extend_from_slice(&0u32.to_le_bytes()); // time, date
        c.extend_from_slice(&crc.to_le_bytes());
        c.extend_from_slice(&size.to_le_bytes());
        c.extend_from_slice(&size.to_le_bytes());
        c.extend_from_slice(&(name.len() as u16).to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes()); // extra
        c.extend_from_slice(&0u16.to_le_bytes()); // comment
        c.extend_from_slice(&0u16.to_le_bytes()); // disk
        c.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        c.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        c.extend_from_slice(&(offset as u32).to_le_bytes());
        c.extend_from_slice(name.as_bytes());
        self.count += 1;
        Ok(())
    }

    /// Appends the central directory and returns the archive's bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, ZipError> {
        let cd_offset = self.out.len();
        let cd_size = self.central.len();
        if cd_offset + cd_size + 22 > u32::MAX as usize {
            return Err(ZipError::TooLarge);
        }
        self.out.extend_from_slice(&self.central);
        let o = &mut self.out;
        o.extend_from_slice(&EOCD_SIG.to_le_bytes());
        o.extend_from_slice(&0u16.to_le_bytes()); // this disk
        o.extend_from_slice(&0u16.to_le_bytes()); // directory disk
        o.extend_from_slice(&self.count.to_le_bytes());
        o.extend_from_slice(&self.count.to_le_bytes());
        o.extend_from_slice(&(cd_size as u32).to_le_bytes());
        o.extend_from_slice(&(cd_offset as u32).to_le_bytes());
        o.extend_from_slice(&0u16.to_le_bytes()); // comment
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_known_string() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trip_and_alignment() {
        let mut w = ZipWriter::new();
        w.add("a/data.pkl", b"hello").unwrap();
        w.add("a/data/0", &[1, 2, 3, 4]).unwrap();
        let bytes = w.finish().unwrap();
        let z = ZipArchive::new(&bytes).unwrap();
        assert_eq!(z.entries().len(), 2);
        assert_eq!(z.read("a/data.pkl").unwrap().unwrap(), b"hello");
        assert_eq!(z.entry("a/data/0").unwrap().data.start % 64, 0);
        assert!(z.read("missing").unwrap().is_none());
    }

    #[test]
    fn damaged_member_is_reported() {
        let mut w = ZipWriter::new();
        w.add("x", b"abcdef").unwrap();
        let mut bytes = w.finish().unwrap();
        let at = ZipArchive::new(&bytes)
            .unwrap()
            .entry("x")
            .unwrap()
            .data
            .start;
        bytes[at] ^= 1;
        let z = ZipArchive::new(&bytes).unwrap();
        assert!(
            matches!(z.read("x").unwrap_err(), ZipError::Member { problem, .. } if problem.contains("CRC"))
        );
    }
}
