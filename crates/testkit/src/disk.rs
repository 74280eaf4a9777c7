//! A small tmpfs mounted over a directory: the kernel's own `ENOSPC` for tests of a full
//! disk. Mounting needs root (as the end-to-end netns tests do).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted over a directory for the life of the value.
pub struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (mount's syntax, e.g. `6m`) on `path`, creating `path`;
    /// panics without root.
    pub fn mount(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).expect("create mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs on {} failed: this test needs root (as the netns tests)",
            path.display()
        );
        SmallDisk {
            path: path.to_path_buf(),
        }
    }

    /// Moves the contents to the disk underneath, as an operator freeing space would.
    pub fn unmount_keeping_files(self, scratch: &Path) {
        copy_dir(&self.path, scratch);
        let path = self.path.clone();
        drop(self);
        copy_dir(scratch, &path);
    }
}

impl Drop for SmallDisk {
    /// Unmounts lazily: a process under test (or an embedded node not yet dropped) may
    /// still hold files on it.
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Copies the files of `from` (not recursive) into `to`.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy target");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
    }
}
