//! A read-only reader of bbolt database files (etcd's backend) for files that are NOT
//! trusted: a snapshot copied from elsewhere, possibly truncated, damaged or hostile.
//!
//! bbolt itself (and bbolt-rs) memory-maps the file and follows its page ids and offsets
//! as they are; here every page id, element count, offset and length is checked against
//! the file before it is used, trees are walked with a depth limit and a visited-page set
//! (a page reached twice is a cycle or a shared page: both refused), and every problem is
//! an [`EtcdImportError`], never a panic. Work and memory are bounded by the file's size.
//!
//! The layout read (bbolt 1.3 / 1.4, little-endian as on every platform etcd ships for):
//!
//! ```text
//! page header  id: u64  flags: u16  count: u16  overflow: u32        (16 bytes)
//! meta         magic: u32 = 0xED0CDAED  version: u32 = 2  page size: u32  flags: u32
//!              root bucket: (root page: u64, sequence: u64)  freelist: u64
//!              high water page id: u64  txid: u64  checksum: u64 (FNV-1a 64 of the 56 before)
//! branch elem  pos: u32  key size: u32  child page: u64              (16 bytes)
//! leaf elem    flags: u32 (1 = bucket)  pos: u32  key size: u32  value size: u32
//! ```
//!
//! Pages 0 and 1 are the two meta pages (page 1 at offset page size); the valid one with
//! the higher txid is the database. A page spans `overflow + 1` pages. An element's key
//! starts `pos` bytes after the element itself, its value right after the key. A bucket's
//! value is (root page, sequence); root page 0 means an inline bucket, whose leaf page
//! follows those 16 bytes inside the value.

use std::io;

use super::EtcdImportError;

/// bbolt's magic number.
pub(super) const MAGIC: u32 = 0xED0C_DAED;
/// The only file format version bbolt has written.
const VERSION: u32 = 2;
/// Page header length.
const PAGE_HEADER: usize = 16;
/// Length of the meta fields covered by the checksum.
const META_CHECKED: usize = 56;
/// Length of the meta fields, checksum included.
const META_LEN: usize = 64;
/// Length of a branch or leaf element.
const ELEMENT: usize = 16;
/// Page flags.
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
/// Leaf element flag: the value is a bucket.
const BUCKET_LEAF: u32 = 0x01;
/// Length of a bucket value's header (root page id, sequence).
const BUCKET_HEADER: usize = 16;
/// Smallest and largest page sizes accepted (bbolt uses the OS page size: 4 KiB on x86
/// and most ARM kernels, 16 or 64 KiB on some arm64 ones).
const MIN_PAGE_SIZE: u32 = 512;
const MAX_PAGE_SIZE: u32 = 1 << 20;
/// Largest page span (page plus overflow) read into memory: far above etcd's largest
/// value (its request limit, 1.5 MiB by default), far below a Pi's memory.
const MAX_SPAN: u64 = 256 << 20;
/// Deepest tree walked (a bbolt tree of a few levels holds gigabytes).
pub(super) const MAX_DEPTH: usize = 32;
/// Page sizes tried for meta page 1 when meta page 0 is damaged (as bbolt falls back to
/// the OS page size).
const FALLBACK_PAGE_SIZES: [u32; 6] = [4096, 16384, 65536, 8192, 32768, 2048];

/// Where the bytes of the database come from: a file, or memory (tests, fuzzing).
pub(super) trait Source {
    /// Length of the database in bytes.
    fn len(&self) -> u64;
    /// Fills `buf` from offset `at`; the caller has checked `at + buf.len() <= len()`.
    fn read_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl Source for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(at).map_err(io::Error::other)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// The first `len` bytes of a file (the database without etcdctl's hash trailer).
pub(super) struct FileSource {
    /// The file.
    pub file: std::fs::File,
    /// Length of the database part.
    pub len: u64,
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, at)
    }
}

/// One meta page's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Meta {
    /// Page size of the file.
    pub page_size: u32,
    /// Root page of the root bucket.
    pub root: u64,
    /// First page id past the end of the data (bbolt's `pgid`).
    pub high_water: u64,
    /// Transaction id of the commit that wrote this meta.
    pub txid: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// FNV-1a 64, bbolt's meta checksum.
pub(super) fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Parses the meta fields (`b` holds at least [`META_LEN`] bytes); None unless the magic,
/// version and checksum are right.
fn parse_meta(b: &[u8]) -> Option<Meta> {
    let b = b.get(..META_LEN)?;
    if u32_at(b, 0) != MAGIC || u32_at(b, 4) != VERSION {
        return None;
    }
    if fnv1a64(&b[..META_CHECKED]) != u64_at(b, META_CHECKED) {
        return None;
    }
    Some(Meta {
        page_size: u32_at(b, 8),
        root: u64_at(b, 16),
        high_water: u64_at(b, 40),
        txid: u64_at(b, 48),
    })
}

/// Whether the first bytes of a file are a bbolt meta page (magic at offset 16).
pub(super) fn has_magic(head: &[u8]) -> bool {
    head.len() >= PAGE_HEADER + 4 && u32_at(head, PAGE_HEADER) == MAGIC
}

/// Where a bucket's tree starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BucketRoot {
    /// A tree of pages rooted at this page id.
    Page(u64),
    /// An inline bucket: one leaf page stored inside the parent's value.
    Inline(Vec<u8>),
}

/// One leaf element, borrowed from the page that holds it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry<'a> {
    /// Whether the value is a bucket header.
    pub bucket: bool,
    /// The key.
    pub key: &'a [u8],
    /// The value.
    pub value: &'a [u8],
}

/// A leaf element's key and value, copied.
pub(super) type OwnedEntry = (Vec<u8>, Vec<u8>);

/// An open bbolt database: the chosen meta page and the bytes to read pages from.
pub(super) struct Db<S: ?Sized + Source> {
    meta: Meta,
    src: Box<S>,
}

impl<S: ?Sized + Source> std::fmt::Debug for Db<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("meta", &self.meta).finish()
    }
}

/// Reads `len` bytes at `at`, checked against the source's length.
fn read<S: ?Sized + Source>(src: &S, at: u64, len: usize) -> Result<Vec<u8>, EtcdImportError> {
    let end = at
        .checked_add(len as u64)
        .filter(|&e| e <= src.len())
        .ok_or(EtcdImportError::Truncated {
            needed: at.saturating_add(len as u64),
            len: src.len(),
        })?;
    let mut buf = vec![0u8; len];
    src.read_at(at, &mut buf)
        .map_err(|e| EtcdImportError::Io(format!("reading bytes {at}..{end}: {e}")))?;
    Ok(buf)
}

/// Reads the meta page at `at`, if it is a valid one of page size `page_size` (when given).
fn meta_at<S: ?Sized + Source>(src: &S, at: u64, page_size: Option<u32>) -> Option<Meta> {
    let b = read(src, at, PAGE_HEADER + META_LEN).ok()?;
    let m = parse_meta(&b[PAGE_HEADER..])?;
    match page_size {
        Some(p) if p != m.page_size => None,
        _ => Some(m),
    }
}

impl<S: ?Sized + Source> Db<S> {
    /// Opens the database in `src`: picks the valid meta page with the higher txid and
    /// checks that its page size and page ids fit the file.
    pub(super) fn open(src: Box<S>) -> Result<Db<S>, EtcdImportError> {
        if src.len() < (PAGE_HEADER + META_LEN) as u64 {
            return Err(EtcdImportError::Truncated {
                needed: (PAGE_HEADER + META_LEN) as u64,
                len: src.len(),
            });
        }
        let head = read(&*src, 0, PAGE_HEADER + 4)?;
        if !has_magic(&head) {
            return Err(EtcdImportError::NotBbolt);
        }
        let meta0 = meta_at(&*src, 0, None).filter(|m| valid_page_size(m.page_size));
        let meta1 = match meta0 {
            Some(m0) => meta_at(&*src, u64::from(m0.page_size), Some(m0.page_size)),
            None => FALLBACK_PAGE_SIZES
                .iter()
                .find_map(|&p| meta_at(&*src, u64::from(p), Some(p))),
        };
        let meta = match (meta0, meta1) {
            (Some(a), Some(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Some(m), None) | (None, Some(m)) => m,
            (None, None) => return Err(EtcdImportError::NoValidMeta),
        };
        if !valid_page_size(meta.page_size) {
            return Err(EtcdImportError::BadMeta(format!(
                "page size {}",
                meta.page_size
            )));
        }
        let size = u64::from(meta.page_size);
        let needed = meta.high_water.checked_mul(size).ok_or_else(|| {
            EtcdImportError::BadMeta(format!("high water page {}", meta.high_water))
        })?;
        if meta.high_water < 3 || needed > src.len() {
            return Err(EtcdImportError::Truncated {
                needed,
                len: src.len(),
            });
        }
        let db = Db { meta, src };
        db.check_page_id(meta.root, 0)?;
        Ok(db)
    }

    /// The meta page in use.
    pub(super) fn meta(&self) -> Meta {
        self.meta
    }

    /// The root bucket.
    pub(super) fn root(&self) -> BucketRoot {
        BucketRoot::Page(self.meta.root)
    }

    /// Checks that a page of `overflow` extra pages at `id` lies in the data pages.
    fn check_page_id(&self, id: u64, overflow: u32) -> Result<(), EtcdImportError> {
        let last = id.checked_add(u64::from(overflow));
        match last {
            Some(last) if id >= 2 && last < self.meta.high_water => Ok(()),
            _ => Err(EtcdImportError::PageOutOfRange {
                page: id,
                high_water: self.meta.high_water,
            }),
        }
    }

    /// Reads page `id` whole (with its overflow pages).
    fn page(&self, id: u64) -> Result<Vec<u8>, EtcdImportError> {
        self.check_page_id(id, 0)?;
        let size = u64::from(self.meta.page_size);
        let at = id * size;
        let head = read(&*self.src, at, PAGE_HEADER)?;
        let stored = u64_at(&head, 0);
        if stored != id {
            return Err(EtcdImportError::BadPage {
                page: id,
                why: format!("header names page {stored}"),
            });
        }
        let overflow = u32_at(&head, 12);
        self.check_page_id(id, overflow)?;
        let span = (u64::from(overflow) + 1) * size;
        if span > MAX_SPAN {
            return Err(EtcdImportError::BadPage {
                page: id,
                why: format!("spans {span} bytes"),
            });
        }
        read(&*self.src, at, span as usize)
    }

    /// Calls `f` on every leaf element of the bucket at `root`, in tree order. Every
    /// page is read at most once per walk (a second visit is refused as a cycle).
    pub(super) fn for_each(
        &self,
        root: &BucketRoot,
        f: &mut dyn FnMut(Entry<'_>) -> Result<(), EtcdImportError>,
    ) -> Result<(), EtcdImportError> {
        let mut visited = Visited::new(self.meta.high_water);
        match root {
            BucketRoot::Page(id) => self.walk(*id, 0, &mut visited, f),
            BucketRoot::Inline(page) => {
                let node = Node::parse(page, 0, true)?;
                if node.branch {
                    return Err(EtcdImportError::BadPage {
                        page: 0,
                        why: "an inline bucket holds a branch page".into(),
                    });
                }
                for i in 0..node.count {
                    f(node.leaf(i)?)?;
                }
                Ok(())
            }
        }
    }

    fn walk(
        &self,
        id: u64,
        depth: usize,
        visited: &mut Visited,
        f: &mut dyn FnMut(Entry<'_>) -> Result<(), EtcdImportError>,
    ) -> Result<(), EtcdImportError> {
        if depth >= MAX_DEPTH {
            return Err(EtcdImportError::TooDeep { page: id });
        }
        self.check_page_id(id, 0)?;
        if !visited.insert(id) {
            return Err(EtcdImportError::Cycle { page: id });
        }
        let buf = self.page(id)?;
        let node = Node::parse(&buf, id, false)?;
        for i in 0..node.count {
            if node.branch {
                let child = node.child(i)?;
                self.walk(child, depth + 1, visited, f)?;
            } else {
                f(node.leaf(i)?)?;
            }
        }
        Ok(())
    }

    /// The last leaf element of the bucket at `root` (the rightmost path), if any:
    /// bbolt keeps keys sorted, so this is the greatest key.
    pub(super) fn last(&self, root: &BucketRoot) -> Result<Option<OwnedEntry>, EtcdImportError> {
        let owned = |e: Entry<'_>| (e.key.to_vec(), e.value.to_vec());
        let mut id = match root {
            BucketRoot::Page(id) => *id,
            BucketRoot::Inline(page) => {
                let node = Node::parse(page, 0, true)?;
                if node.branch || node.count == 0 {
                    return Ok(None);
                }
                return Ok(Some(owned(node.leaf(node.count - 1)?)));
            }
        };
        for _ in 0..MAX_DEPTH {
            let buf = self.page(id)?;
            let node = Node::parse(&buf, id, false)?;
            if node.count == 0 {
                return Ok(None);
            }
            if !node.branch {
                return Ok(Some(owned(node.leaf(node.count - 1)?)));
            }
            id = node.child(node.count - 1)?;
        }
        Err(EtcdImportError::TooDeep { page: id })
    }
}

/// Whether `p` is a page size this reader accepts.
fn valid_page_size(p: u32) -> bool {
    p.is_power_of_two() && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&p)
}

/// A bucket value's root, checked.
pub(super) fn bucket_root(key: &[u8], value: &[u8]) -> Result<BucketRoot, EtcdImportError> {
    if value.len() < BUCKET_HEADER {
        return Err(EtcdImportError::BadBucket {
            name: String::from_utf8_lossy(key).into_owned(),
            why: format!("bucket value of {} bytes", value.len()),
        });
    }
    match u64_at(value, 0) {
        0 => Ok(BucketRoot::Inline(value[BUCKET_HEADER..].to_vec())),
        id => Ok(BucketRoot::Page(id)),
    }
}

/// One branch or leaf page (or inline bucket page), its elements checked on access.
struct Node<'a> {
    buf: &'a [u8],
    page: u64,
    branch: bool,
    count: usize,
}

impl<'a> Node<'a> {
    /// Checks the header: a branch or leaf page whose elements fit in `buf`.
    fn parse(buf: &'a [u8], page: u64, inline: bool) -> Result<Node<'a>, EtcdImportError> {
        let bad = |why: String| EtcdImportError::BadPage { page, why };
        if buf.len() < PAGE_HEADER {
            return Err(bad(format!("{} bytes", buf.len())));
        }
        let flags = u16_at(buf, 8);
        let branch = match flags {
            BRANCH if !inline => true,
            LEAF => false,
            other => return Err(bad(format!("flags {other:#x}, not a branch or leaf page"))),
        };
        let count = usize::from(u16_at(buf, 10));
        if PAGE_HEADER + count * ELEMENT > buf.len() {
            return Err(bad(format!(
                "{count} elements do not fit in {} bytes",
                buf.len()
            )));
        }
        if branch && count == 0 {
            return Err(bad("an empty branch page".into()));
        }
        Ok(Node {
            buf,
            page,
            branch,
            count,
        })
    }

    /// The bytes `pos` after element `i` of `len` bytes.
    fn span(&self, i: usize, pos: u32, len: u64) -> Result<&'a [u8], EtcdImportError> {
        let elem = PAGE_HEADER + i * ELEMENT;
        let start = (elem as u64).checked_add(u64::from(pos));
        let end = start.and_then(|s| s.checked_add(len));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.buf.len() as u64 => {
                Ok(&self.buf[s as usize..e as usize])
            }
            _ => Err(EtcdImportError::BadPage {
                page: self.page,
                why: format!("element {i} points past the page"),
            }),
        }
    }

    /// Branch element `i`'s child page id.
    fn child(&self, i: usize) -> Result<u64, EtcdImportError> {
        let elem = PAGE_HEADER + i * ELEMENT;
        let pos = u32_at(self.buf, elem);
        let ksize = u32_at(self.buf, elem + 4);
        // The key is only checked to lie in the page: the walk goes by position.
        self.span(i, pos, u64::from(ksize))?;
        Ok(u64_at(self.buf, elem + 8))
    }

    /// Leaf element `i`.
    fn leaf(&self, i: usize) -> Result<Entry<'a>, EtcdImportError> {
        let elem = PAGE_HEADER + i * ELEMENT;
        let flags = u32_at(self.buf, elem);
        let pos = u32_at(self.buf, elem + 4);
        let ksize = u32_at(self.buf, elem + 8);
        let vsize = u32_at(self.buf, elem + 12);
        let both = self.span(i, pos, u64::from(ksize) + u64::from(vsize))?;
        let (key, value) = both.split_at(ksize as usize);
        Ok(Entry {
            bucket: flags & BUCKET_LEAF != 0,
            key,
            value,
        })
    }
}

/// A set of page ids below the high water mark, one bit each.
struct Visited {
    bits: Vec<u64>,
}

impl Visited {
    fn new(high_water: u64) -> Visited {
        // high_water * page size <= the file's length, so this is at most len / 4096 bits.
        let words = usize::try_from(high_water.div_ceil(64)).unwrap_or(usize::MAX);
        Visited {
            bits: vec![0; words],
        }
    }

    /// Adds `id` (already checked below the high water mark); false if it was there.
    fn insert(&mut self, id: u64) -> bool {
        let (w, b) = ((id / 64) as usize, id % 64);
        match self.bits.get_mut(w) {
            Some(word) if *word & (1 << b) == 0 => {
                *word |= 1 << b;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
