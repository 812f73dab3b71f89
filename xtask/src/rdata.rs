//! Jane Austen's novels out of `r-cran-janeaustenr`'s R lazy-load database.
//!
//! R stores a package's data as two files. `Rdata.rdx` is the index: an R serialization,
//! gzip-compressed (it is written by `saveRDS`; zlib is accepted too), of the named list
//! `list(variables = list(NAME = c(offset, length), ...), references = ..., compressed = TRUE)`.
//! `Rdata.rdb` holds the values: at each `offset`, `length` bytes made of a 4-byte big-endian
//! uncompressed size and a zlib stream of one R serialization (`compressed = TRUE`; the bzip2
//! and xz variants, `compressed = 2 / 3`, are refused by name).
//!
//! A serialization is R's XDR format ("X\n", format version 2 or 3, then big-endian items).
//! Every item starts with a 32-bit flags word: the SEXP type in the low 8 bits, "is object" in
//! bit 8, "has attributes" in bit 9, "has tag" in bit 10 and the general-purpose levels above
//! bit 12 (for strings: bit 14 latin1, bit 15 UTF-8). The novels are character vectors
//! (STRSXP: length, then CHARSXPs of length + bytes, length -1 being `NA`). The decoder reads
//! exactly the types such a database uses (NULL, symbols, references, pairlists, character,
//! logical, integer, double and generic vectors) and names any other type it meets.

use std::io::Read;
use std::path::Path;

/// Something the decoder could not read.
#[derive(Debug, thiserror::Error)]
pub enum RDataError {
    /// The bytes end before an item does.
    #[error("R serialization truncated at byte {at} (wanted {wanted} more bytes)")]
    Truncated {
        /// Where the read started.
        at: usize,
        /// How many bytes it needed.
        wanted: usize,
    },
    /// Not an XDR serialization, or a format version other than 2 and 3.
    #[error("not an R XDR serialization (format 2 or 3): {0}")]
    NotXdr(String),
    /// A SEXP type the decoder does not read.
    #[error("unsupported R SEXP type {kind} at byte {at}")]
    UnsupportedType {
        /// The SEXP type number (`STRSXP` is 16).
        kind: u8,
        /// Where its flags word starts.
        at: usize,
    },
    /// A back reference to a symbol that was not read.
    #[error("R reference {index} at byte {at} points past the {known} symbols read")]
    BadReference {
        /// The 1-based reference index.
        index: usize,
        /// Where it was read.
        at: usize,
        /// How many symbols were read before it.
        known: usize,
    },
    /// A string that is not valid UTF-8 while flagged (or defaulting to) UTF-8.
    #[error("R string at byte {at} is not valid UTF-8")]
    Utf8 {
        /// Where its bytes start.
        at: usize,
    },
    /// A zlib or gzip stream that does not inflate.
    #[error("{what} does not decompress: {message}")]
    Inflate {
        /// The stream (`Rdata.rdx`, or the variable's chunk).
        what: String,
        /// What flate2 said.
        message: String,
    },
    /// The database is not shaped as described in the module docs.
    #[error("R lazy-load database: {0}")]
    Layout(String),
    /// A file that cannot be read or written.
    #[error("cannot access '{}': {source}", .path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A decoded R value.
#[derive(Debug, Clone, PartialEq)]
pub enum RValue {
    /// `NULL`.
    Null,
    /// A symbol (a name).
    Symbol(String),
    /// A pairlist: (tag, value) pairs, as attributes are stored.
    Pairlist(Vec<(Option<String>, RValue)>),
    /// A vector with its attributes.
    Vector(RVector, Vec<(Option<String>, RValue)>),
}

/// The contents of an R vector.
#[derive(Debug, Clone, PartialEq)]
pub enum RVector {
    /// `character` (STRSXP); `None` is `NA`.
    Strings(Vec<Option<String>>),
    /// `integer` (INTSXP) or `logical` (LGLSXP, 0 / 1 / `NA_integer_`).
    Ints(Vec<i32>),
    /// `double` (REALSXP).
    Reals(Vec<f64>),
    /// `list` (VECSXP).
    List(Vec<RValue>),
}

impl RValue {
    /// The attribute `name` of a vector.
    pub fn attribute(&self, name: &str) -> Option<&RValue> {
        match self {
            RValue::Vector(_, attrs) => attrs
                .iter()
                .find(|(tag, _)| tag.as_deref() == Some(name))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The strings of a character vector.
    pub fn strings(&self) -> Option<&[Option<String>]> {
        match self {
            RValue::Vector(RVector::Strings(s), _) => Some(s),
            _ => None,
        }
    }

    /// A generic vector's elements with their `names` attribute.
    fn named_list(&self, what: &str) -> Result<Vec<(String, &RValue)>, RDataError> {
        let RValue::Vector(RVector::List(items), _) = self else {
            return Err(RDataError::Layout(format!("{what} is not a list")));
        };
        let names = self
            .attribute("names")
            .and_then(RValue::strings)
            .ok_or_else(|| RDataError::Layout(format!("{what} has no names")))?;
        if names.len() != items.len() {
            return Err(RDataError::Layout(format!(
                "{what} has {} names for {} elements",
                names.len(),
                items.len()
            )));
        }
        Ok(names
            .iter()
            .map(|n| n.clone().unwrap_or_default())
            .zip(items)
            .collect())
    }
}

const NILVALUE: u8 = 254;
const REF: u8 = 255;
const SYM: u8 = 1;
const LIST: u8 = 2;
const CHAR: u8 = 9;
const LGL: u8 = 10;
const INT: u8 = 13;
const REAL: u8 = 14;
const STR: u8 = 16;
const VEC: u8 = 19;

/// A cursor over one XDR serialization.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    symbols: Vec<String>,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RDataError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(RDataError::Truncated {
            at: self.at,
            wanted: n,
        })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn int(&mut self) -> Result<i32, RDataError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A vector length: an int, or -1 followed by the upper and lower halves of a long one.
    fn length(&mut self) -> Result<usize, RDataError> {
        let at = self.at;
        match self.int()? {
            -1 => {
                let (hi, lo) = (self.int()? as u32 as u64, self.int()? as u32 as u64);
                usize::try_from(hi << 32 | lo)
                    .map_err(|_| RDataError::NotXdr(format!("length at byte {at} too large")))
            }
            n if n >= 0 => Ok(n as usize),
            n => Err(RDataError::NotXdr(format!(
                "negative length {n} at byte {at}"
            ))),
        }
    }

    /// A CHARSXP's contents (its flags word already read).
    fn chars(&mut self, flags: u32) -> Result<Option<String>, RDataError> {
        let n = self.int()?;
        if n == -1 {
            return Ok(None);
        }
        let at = self.at;
        let bytes =
            self.take(usize::try_from(n).map_err(|_| RDataError::Truncated { at, wanted: 0 })?)?;
        if flags & (1 << 14) != 0 {
            // latin1: every byte is the code point.
            return Ok(Some(bytes.iter().map(|&b| b as char).collect()));
        }
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| RDataError::Utf8 { at })
    }

    /// A pairlist's remaining (tag, value) pairs, `flags` being its first cell's.
    fn pairlist(&mut self, mut flags: u32) -> Result<RValue, RDataError> {
        let mut cells = Vec::new();
        loop {
            if flags & 0x200 != 0 {
                self.item()?; // a cell's own attributes: none in a data base; read past them
            }
            let tag = if flags & 0x400 != 0 {
                match self.item()? {
                    RValue::Symbol(s) => Some(s),
                    other => {
                        return Err(RDataError::Layout(format!(
                            "pairlist tag is not a symbol: {other:?}"
                        )));
                    }
                }
            } else {
                None
            };
            cells.push((tag, self.item()?));
            let at = self.at;
            flags = self.int()? as u32;
            match (flags & 0xff) as u8 {
                LIST => continue,
                NILVALUE => return Ok(RValue::Pairlist(cells)),
                kind => return Err(RDataError::UnsupportedType { kind, at }),
            }
        }
    }

    fn attributes(&mut self, flags: u32) -> Result<Vec<(Option<String>, RValue)>, RDataError> {
        if flags & 0x200 == 0 {
            return Ok(Vec::new());
        }
        match self.item()? {
            RValue::Pairlist(cells) => Ok(cells),
            other => Err(RDataError::Layout(format!(
                "attributes are not a pairlist: {other:?}"
            ))),
        }
    }

    fn item(&mut self) -> Result<RValue, RDataError> {
        let at = self.at;
        let flags = self.int()? as u32;
        let kind = (flags & 0xff) as u8;
        let vector = match kind {
            NILVALUE => return Ok(RValue::Null),
            REF => {
                let index = match flags >> 8 {
                    0 => self.int()? as usize,
                    i => i as usize,
                };
                let known = self.symbols.len();
                return match index.checked_sub(1).and_then(|i| self.symbols.get(i)) {
                    Some(s) => Ok(RValue::Symbol(s.clone())),
                    None => Err(RDataError::BadReference { index, at, known }),
                };
            }
            SYM => {
                let name = match self.item()? {
                    RValue::Vector(RVector::Strings(mut s), _) if s.len() == 1 => s.pop().flatten(),
                    _ => None,
                };
                let name = name.ok_or_else(|| {
                    RDataError::Layout(format!("symbol at byte {at} has no name"))
                })?;
                self.symbols.push(name.clone());
                return Ok(RValue::Symbol(name));
            }
            LIST => return self.pairlist(flags),
            // A lone CHARSXP (a symbol's name) reads as a one-string vector.
            CHAR => RVector::Strings(vec![self.chars(flags)?]),
            STR => {
                let n = self.length()?;
                let mut out = Vec::with_capacity(n.min(self.bytes.len() / 8));
                for _ in 0..n {
                    let at = self.at;
                    let flags = self.int()? as u32;
                    if (flags & 0xff) as u8 != CHAR {
                        return Err(RDataError::UnsupportedType {
                            kind: (flags & 0xff) as u8,
                            at,
                        });
                    }
                    out.push(self.chars(flags)?);
                }
                RVector::Strings(out)
            }
            LGL | INT => {
                let n = self.length()?;
                let bytes = self.take(n.checked_mul(4).ok_or(RDataError::Truncated {
                    at: self.at,
                    wanted: usize::MAX,
                })?)?;
                RVector::Ints(
                    bytes
                        .chunks_exact(4)
                        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                )
            }
            REAL => {
                let n = self.length()?;
                let bytes = self.take(n.checked_mul(8).ok_or(RDataError::Truncated {
                    at: self.at,
                    wanted: usize::MAX,
                })?)?;
                RVector::Reals(
                    bytes
                        .chunks_exact(8)
                        .map(|b| f64::from_be_bytes(b.try_into().expect("8-byte chunk")))
                        .collect(),
                )
            }
            VEC => {
                let n = self.length()?;
                let mut out = Vec::with_capacity(n.min(self.bytes.len() / 4));
                for _ in 0..n {
                    out.push(self.item()?);
                }
                RVector::List(out)
            }
            kind => return Err(RDataError::UnsupportedType { kind, at }),
        };
        let attrs = self.attributes(flags)?;
        Ok(RValue::Vector(vector, attrs))
    }
}

/// Decodes one R XDR serialization (format 2 or 3).
///
/// # Errors
/// [`RDataError`] naming the byte offset and what was unexpected there.
pub fn unserialize(bytes: &[u8]) -> Result<RValue, RDataError> {
    if !bytes.starts_with(b"X\n") {
        let head = &bytes[..bytes.len().min(2)];
        return Err(RDataError::NotXdr(format!(
            "starts with {head:?}, not \"X\\n\""
        )));
    }
    let mut r = Reader {
        bytes,
        at: 2,
        symbols: Vec::new(),
    };
    let version = r.int()?;
    r.int()?; // the writer's R version
    r.int()?; // the oldest R version that reads it
    match version {
        2 => {}
        3 => {
            // The writer's native encoding, e.g. "UTF-8".
            let n = r.length()?;
            r.take(n)?;
        }
        v => return Err(RDataError::NotXdr(format!("format version {v}"))),
    }
    r.item()
}

fn inflate(what: &str, bytes: &[u8], gzip: bool) -> Result<Vec<u8>, RDataError> {
    let mut out = Vec::new();
    let result = if gzip {
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)
    } else {
        flate2::read::ZlibDecoder::new(bytes).read_to_end(&mut out)
    };
    result.map_err(|e| RDataError::Inflate {
        what: what.to_string(),
        message: e.to_string(),
    })?;
    Ok(out)
}

/// Every variable of a lazy-load database, in the index's order.
///
/// # Errors
/// [`RDataError`] naming the stream or the part of the index that is not as described in the
/// module docs.
pub fn read_lazy_load_db(rdb: &[u8], rdx: &[u8]) -> Result<Vec<(String, RValue)>, RDataError> {
    let index = unserialize(&inflate("Rdata.rdx", rdx, rdx.starts_with(&[0x1f, 0x8b]))?)?;
    let fields = index.named_list("the index")?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| RDataError::Layout(format!("the index has no '{name}'")))
    };
    match field("compressed")? {
        RValue::Vector(RVector::Ints(c), _) if c.as_slice() == [1] => {}
        other => {
            return Err(RDataError::Layout(format!(
                "only zlib chunks (compressed = TRUE) are read, found compressed = {other:?}"
            )));
        }
    }
    let mut out = Vec::new();
    for (name, place) in field("variables")?.named_list("'variables'")? {
        let (offset, length) = match place {
            RValue::Vector(RVector::Ints(v), _) if v.len() == 2 && v[0] >= 0 && v[1] >= 4 => {
                (v[0] as usize, v[1] as usize)
            }
            other => {
                return Err(RDataError::Layout(format!(
                    "variable '{name}': expected c(offset, length), found {other:?}"
                )));
            }
        };
        let chunk = rdb.get(offset..offset + length).ok_or_else(|| {
            RDataError::Layout(format!(
                "variable '{name}': bytes {offset}..{} are past the end of Rdata.rdb ({} bytes)",
                offset + length,
                rdb.len()
            ))
        })?;
        let size = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) as usize;
        let data = inflate(&format!("variable '{name}'"), &chunk[4..], false)?;
        if data.len() != size {
            return Err(RDataError::Layout(format!(
                "variable '{name}': inflated to {} bytes, its header says {size}",
                data.len()
            )));
        }
        out.push((name, unserialize(&data)?));
    }
    Ok(out)
}

/// janeaustenr's variable names and the text files written for them.
pub const NOVELS: [(&str, &str); 6] = [
    ("emma", "emma.txt"),
    ("mansfieldpark", "mansfield-park.txt"),
    ("northangerabbey", "northanger-abbey.txt"),
    ("persuasion", "persuasion.txt"),
    ("prideprejudice", "pride-and-prejudice.txt"),
    ("sensesensibility", "sense-and-sensibility.txt"),
];

/// The six novels as (file name, text): each character vector's lines joined with `\n` (no
/// trailing newline; an `NA` line, of which janeaustenr has none, becomes an empty line).
///
/// Pride and Prejudice starts at its line "Chapter 1", as the project's perplexity texts do: the
/// six lines before it (the title "PRIDE AND PREJUDICE", "By Jane Austen" and four empty lines)
/// are dropped. The other novels are kept whole, title lines included.
///
/// # Errors
/// [`RDataError`] when the database does not decode, a novel is missing or not a character
/// vector, or Pride and Prejudice has no "Chapter 1" line.
pub fn novels(rdb: &[u8], rdx: &[u8]) -> Result<Vec<(&'static str, String)>, RDataError> {
    let variables = read_lazy_load_db(rdb, rdx)?;
    NOVELS
        .iter()
        .map(|&(var, file)| {
            let value = variables
                .iter()
                .find(|(n, _)| n == var)
                .map(|(_, v)| v)
                .ok_or_else(|| RDataError::Layout(format!("no variable '{var}'")))?;
            let lines = value
                .strings()
                .ok_or_else(|| RDataError::Layout(format!("'{var}' is not a character vector")))?;
            let start = if var == "prideprejudice" {
                lines
                    .iter()
                    .position(|l| l.as_deref() == Some("Chapter 1"))
                    .ok_or_else(|| {
                        RDataError::Layout("'prideprejudice' has no line \"Chapter 1\"".into())
                    })?
            } else {
                0
            };
            let text = lines[start..]
                .iter()
                .map(|l| l.as_deref().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            Ok((file, text))
        })
        .collect()
}

/// Replaces `Rdata.rdb` and `Rdata.rdx` in `dir` by the six novels' text files (see
/// [`novels`]).
///
/// # Errors
/// [`RDataError::Io`] naming the file, or the decoding errors of [`novels`].
pub fn write_novels(dir: &Path) -> Result<(), RDataError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| RDataError::Io { path, source })
    };
    let (rdb, rdx) = (read("Rdata.rdb")?, read("Rdata.rdx")?);
    for (file, text) in novels(&rdb, &rdx)? {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(|source| RDataError::Io { path, source })?;
    }
    for raw in ["Rdata.rdb", "Rdata.rdx"] {
        let path = dir.join(raw);
        std::fs::remove_file(&path).map_err(|source| RDataError::Io { path, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A big-endian XDR writer for hand-built serializations.
    #[derive(Default)]
    struct Xdr(Vec<u8>);

    impl Xdr {
        fn header(version: i32) -> Self {
            let mut x = Xdr(b"X\n".to_vec());
            x.int(version).int(0x0004_0201).int(0x0003_0500);
            if version == 3 {
                x.int(5).bytes(b"UTF-8");
            }
            x
        }
        fn int(&mut self, v: i32) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn bytes(&mut self, b: &[u8]) -> &mut Self {
            self.0.extend_from_slice(b);
            self
        }
        /// A CHARSXP: UTF-8 flagged (gp bit 3 -> flag bit 15), or NA.
        fn chars(&mut self, s: Option<&str>) -> &mut Self {
            match s {
                Some(s) => self
                    .int(9 | 1 << 15)
                    .int(s.len() as i32)
                    .bytes(s.as_bytes()),
                None => self.int(9).int(-1),
            }
        }
        fn strings(&mut self, items: &[Option<&str>]) -> &mut Self {
            self.int(16).int(items.len() as i32);
            for s in items {
                self.chars(*s);
            }
            self
        }
    }

    fn zlib(bytes: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(bytes).unwrap();
        z.finish().unwrap()
    }

    #[test]
    fn a_hand_built_zlib_string_vector_decodes_with_its_na_and_utf8() {
        let mut x = Xdr::header(3);
        x.strings(&[Some("Chapter 1"), None, Some("Élinor’s")]);
        let packed = zlib(&x.0);
        let value = unserialize(&inflate("test", &packed, false).unwrap()).unwrap();
        assert_eq!(
            value.strings().unwrap(),
            [
                Some("Chapter 1".to_string()),
                None,
                Some("Élinor’s".to_string())
            ]
        );
    }

    #[test]
    fn a_latin1_string_decodes_byte_by_byte() {
        let mut x = Xdr::header(2);
        x.int(16)
            .int(1)
            .int(9 | 1 << 14)
            .int(3)
            .bytes(&[0x63, 0x61, 0xe9]);
        let value = unserialize(&x.0).unwrap();
        assert_eq!(value.strings().unwrap(), [Some("caé".to_string())]);
    }

    /// A whole database: an index (gzip, as saveRDS writes it) of two variables, one using a
    /// back reference for its `names` symbol.
    fn database() -> (Vec<u8>, Vec<u8>) {
        let mut rdb = Vec::new();
        let mut places = Vec::new();
        for lines in [
            &[
                Some("PRIDE AND PREJUDICE"),
                Some(""),
                Some("Chapter 1"),
                Some("It is"),
            ][..],
            &[Some("EMMA"), None][..],
        ] {
            let mut x = Xdr::header(2);
            x.strings(lines);
            let z = zlib(&x.0);
            places.push((rdb.len() as i32, 4 + z.len() as i32));
            rdb.extend_from_slice(&(x.0.len() as u32).to_be_bytes());
            rdb.extend_from_slice(&z);
        }
        let mut x = Xdr::header(3);
        // list(variables = list(prideprejudice = .., emma = ..), compressed = TRUE)
        x.int(19 | 0x200).int(2);
        x.int(19 | 0x200).int(2);
        for (offset, length) in &places {
            x.int(13).int(2).int(*offset).int(*length);
        }
        // attributes: pairlist(names = c("prideprejudice", "emma")); `names` is symbol 1
        x.int(2 | 0x400).int(1).chars(Some("names"));
        x.strings(&[Some("prideprejudice"), Some("emma")]).int(254);
        x.int(10).int(1).int(1);
        x.int(2 | 0x400).int(255 | 1 << 8); // the tag: a reference to symbol 1, `names`
        x.strings(&[Some("variables"), Some("compressed")]).int(254);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&x.0).unwrap();
        (rdb, gz.finish().unwrap())
    }

    #[test]
    fn a_hand_built_lazy_load_database_lists_its_variables() {
        let (rdb, rdx) = database();
        let vars = read_lazy_load_db(&rdb, &rdx).unwrap();
        let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["prideprejudice", "emma"]);
        assert_eq!(
            vars[1].1.strings().unwrap(),
            [Some("EMMA".to_string()), None]
        );
    }

    #[test]
    fn a_database_without_a_novel_is_an_error_naming_it() {
        let (rdb, rdx) = database();
        let err = novels(&rdb, &rdx).unwrap_err();
        assert_eq!(
            err.to_string(),
            "R lazy-load database: no variable 'mansfieldpark'"
        );
    }

    #[test]
    fn an_unknown_sexp_type_is_named_with_its_offset() {
        let mut x = Xdr::header(2);
        x.int(6); // LANGSXP
        let err = unserialize(&x.0).unwrap_err();
        assert_eq!(err.to_string(), "unsupported R SEXP type 6 at byte 14");
    }

    #[test]
    fn a_truncated_string_is_an_error_not_a_panic() {
        let mut x = Xdr::header(2);
        x.int(16).int(1).int(9).int(100).bytes(b"short");
        let err = unserialize(&x.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "R serialization truncated at byte 30 (wanted 100 more bytes)"
        );
    }

    /// The real janeaustenr database, when `data/external/austen-raw/` holds it (the shared
    /// cache of the raw Debian files); otherwise there is nothing to decode and the test says so.
    #[test]
    fn the_real_pride_and_prejudice_starts_at_chapter_1_and_its_first_sentence() {
        let raw = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/external/austen-raw");
        let (Ok(rdb), Ok(rdx)) = (
            std::fs::read(raw.join("Rdata.rdb")),
            std::fs::read(raw.join("Rdata.rdx")),
        ) else {
            eprintln!("skipped: no {}/Rdata.rdb and .rdx", raw.display());
            return;
        };
        let books = novels(&rdb, &rdx).unwrap();
        let files: Vec<&str> = books.iter().map(|(f, _)| *f).collect();
        assert_eq!(files, NOVELS.map(|(_, f)| f));
        let pride = &books[4].1;
        let lines: Vec<&str> = pride.lines().filter(|l| !l.is_empty()).take(3).collect();
        assert_eq!(
            lines,
            [
                "Chapter 1",
                "It is a truth universally acknowledged, that a single man in possession",
                "of a good fortune, must be in want of a wife."
            ]
        );
        // Line counts from scripts/reference/datasets.py (austen): 13030 lines in the R vector,
        // 6 dropped before "Chapter 1".
        assert_eq!(pride.split('\n').count(), 13024);
        assert_eq!(books[0].1.split('\n').count(), 16235);
        assert!(books[0].1.starts_with("EMMA\n\nBy Jane Austen"));
    }
}
