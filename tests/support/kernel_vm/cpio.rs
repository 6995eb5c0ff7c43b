//! A cpio archive in the "newc" format (070701), the format the kernel unpacks an initramfs from
//! (Documentation/driver-api/early-userspace/buffer-format.rst). Written here rather than with
//! cpio(1) so that device nodes, modes and ownership come out the same whoever runs the tests.

/// One member of the archive.
enum Entry {
    Directory,
    File { data: Vec<u8>, mode: u32 },
    Symlink { target: String },
    CharDevice { major: u32, minor: u32, mode: u32 },
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// An archive built in memory; members keep the order they were added in, so directories must
/// come before what they hold (`add_*` create missing parent directories first).
#[derive(Default)]
pub struct Cpio {
    entries: Vec<(String, Entry)>,
    directories: std::collections::BTreeSet<String>,
}

impl Cpio {
    pub fn new() -> Cpio {
        Cpio::default()
    }

    /// Adds `path` (absolute or relative to the archive's root) and its parents as directories.
    pub fn add_directory(&mut self, path: &str) {
        let path = normalise(path);
        if path.is_empty() || self.directories.contains(&path) {
            return;
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.add_directory(parent);
        }
        self.directories.insert(path.clone());
        self.entries.push((path, Entry::Directory));
    }

    /// Adds a regular file; fails if `path` is already in the archive.
    pub fn add_file(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.add(path, Entry::File { data, mode });
    }

    pub fn add_symlink(&mut self, path: &str, target: &str) {
        self.add(
            path,
            Entry::Symlink {
                target: target.to_string(),
            },
        );
    }

    pub fn add_char_device(&mut self, path: &str, major: u32, minor: u32, mode: u32) {
        self.add(path, Entry::CharDevice { major, minor, mode });
    }

    /// Whether `path` was added already (as any kind of member).
    pub fn contains(&self, path: &str) -> bool {
        let path = normalise(path);
        self.entries.iter().any(|(p, _)| *p == path)
    }

    fn add(&mut self, path: &str, entry: Entry) {
        let path = normalise(path);
        assert!(
            !self.contains(&path),
            "initramfs: {path} added twice to the archive"
        );
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.add_directory(parent);
        }
        self.entries.push((path, entry));
    }

    /// The archive's bytes, ending with the TRAILER!!! member.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (ino, (path, entry)) in self.entries.iter().enumerate() {
            let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match entry {
                Entry::Directory => (S_IFDIR | 0o755, &[], (0, 0)),
                Entry::File { data, mode } => (S_IFREG | mode, data, (0, 0)),
                Entry::Symlink { target } => (S_IFLNK | 0o777, target.as_bytes(), (0, 0)),
                Entry::CharDevice { major, minor, mode } => (S_IFCHR | mode, &[], (*major, *minor)),
            };
            let nlink = if matches!(entry, Entry::Directory) {
                2
            } else {
                1
            };
            write_member(&mut out, ino as u32 + 1, mode, nlink, rdev, path, data);
        }
        write_member(&mut out, 0, 0, 1, (0, 0), "TRAILER!!!", &[]);
        out
    }
}

fn normalise(path: &str) -> String {
    path.trim_matches('/').to_string()
}

fn write_member(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    name: &str,
    data: &[u8],
) {
    let name_size = name.len() + 1; // with its NUL
    let fields = [
        ino,
        mode,
        0, // uid: root
        0, // gid
        nlink,
        0, // mtime: fixed, so the archive depends only on its contents
        u32::try_from(data.len()).expect("initramfs member larger than 4 GiB"),
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        name_size as u32,
        0, // check: unused in newc
    ];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_newc_members_are_aligned_and_parents_come_first() {
        let mut cpio = Cpio::new();
        cpio.add_file("/bin/x", b"abc".to_vec(), 0o755);
        cpio.add_char_device("/dev/console", 5, 1, 0o600);
        let bytes = cpio.to_bytes();
        // bin, bin/x, dev, dev/console, TRAILER!!!
        let names: Vec<&str> = cpio.entries.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["bin", "bin/x", "dev", "dev/console"]);
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(bytes.len() % 4, 0);
        // The first header: inode 1, a directory 0755, namesize 4 ("bin\0").
        let header = std::str::from_utf8(&bytes[6..110]).unwrap();
        assert_eq!(&header[..8], "00000001");
        assert_eq!(&header[8..16], "000041ED");
        assert_eq!(&header[88..96], "00000004");
        // 110-byte header + "bin\0" = 114, padded to 116; the file member follows.
        assert_eq!(&bytes[116..122], b"070701");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("TRAILER!!!"));
        // The console's device number is in rdevmajor/rdevminor.
        let console = text.find("dev/console").unwrap();
        let header = &text[console - 104..console];
        assert_eq!(&header[72..80], "00000005");
        assert_eq!(&header[80..88], "00000001");
    }

    #[test]
    #[should_panic(expected = "added twice")]
    fn harness_a_path_cannot_be_added_twice() {
        let mut cpio = Cpio::new();
        cpio.add_file("/init", Vec::new(), 0o755);
        cpio.add_symlink("/init", "/bin/sh");
    }
}
