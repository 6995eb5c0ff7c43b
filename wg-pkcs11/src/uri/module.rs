//! Which PKCS#11 module a URI names: `module-path`, else `module-name` among p11-kit's
//! registered modules (then the PKCS#11 libdir), else p11-kit's proxy.

use std::path::{Path, PathBuf};

use super::Pkcs11Uri;

// Where Debian's multiarch PKCS#11 modules live (`module:` lines of p11-kit files and
// `module-name` fall back to that directory), and p11-kit's proxy (the module used when a URI
// names none; it re-exports every registered module): for the build target's architecture,
// see `multiarch.rs`.

/// p11-kit's module registration directories, system first (as p11-kit reads them).
pub const P11_KIT_MODULE_DIRS: &[&str] = &["/etc/pkcs11/modules", "/usr/share/p11-kit/modules"];

/// Finds the module a URI asks for: `module-path`, else `module-name` among p11-kit's
/// registered modules (then the PKCS#11 libdir), else p11-kit's proxy.
#[derive(Debug, Clone)]
pub struct ModuleResolver {
    /// Directories with p11-kit `NAME.module` files, searched in order.
    pub module_dirs: Vec<PathBuf>,
    /// Where relative `module:` paths and bare module names are looked up.
    pub libdir: PathBuf,
    pub default_module: PathBuf,
}

impl ModuleResolver {
    /// The directories p11-kit itself reads on Debian, plus the user's own.
    pub fn system() -> ModuleResolver {
        let mut module_dirs: Vec<PathBuf> = P11_KIT_MODULE_DIRS.iter().map(PathBuf::from).collect();
        if let Some(home) = std::env::var_os("HOME") {
            module_dirs.push(Path::new(&home).join(".config/pkcs11/modules"));
        }
        ModuleResolver {
            module_dirs,
            libdir: PathBuf::from(crate::multiarch::pkcs11_module_dir()),
            default_module: PathBuf::from(crate::multiarch::p11_kit_proxy()),
        }
    }

    pub fn resolve(&self, uri: &Pkcs11Uri) -> Result<PathBuf, String> {
        // RFC 7512: module-path wins over module-name; a directory path is searched by name.
        if let Some(path) = &uri.module_path {
            let path = PathBuf::from(path);
            if path.is_dir() {
                let Some(name) = &uri.module_name else {
                    return Err(format!(
                        "module-path `{}` is a directory and no module-name says which module in it to load",
                        path.display()
                    ));
                };
                return library_in_dir(&path, name).ok_or_else(|| {
                    format!(
                        "module `{name}` not found in module-path directory `{}`",
                        path.display()
                    )
                });
            }
            if !path.exists() {
                return Err(format!("module-path `{}` does not exist", path.display()));
            }
            return Ok(path);
        }
        if let Some(name) = &uri.module_name {
            if let Some(path) = self.registered_module(name)? {
                return Ok(path);
            }
            if let Some(path) = library_in_dir(&self.libdir, name) {
                return Ok(path);
            }
            let dirs: Vec<String> = self
                .module_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            return Err(format!(
                "module-name `{name}`: no `{name}.module` in {} and no {name}.so or lib{name}.so in {}",
                dirs.join(", "),
                self.libdir.display()
            ));
        }
        Ok(self.default_module.clone())
    }

    /// The `module:` line of `NAME.module` in the first directory that has one.
    fn registered_module(&self, name: &str) -> Result<Option<PathBuf>, String> {
        for dir in &self.module_dirs {
            let file = dir.join(format!("{name}.module"));
            let Ok(content) = std::fs::read_to_string(&file) else {
                continue;
            };
            let module = content.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "module").then(|| value.trim().to_string())
            });
            let Some(module) = module else {
                return Err(format!("{} has no `module:` line", file.display()));
            };
            let path = Path::new(&module);
            return Ok(Some(if path.is_absolute() {
                path.to_path_buf()
            } else {
                self.libdir.join(path)
            }));
        }
        Ok(None)
    }
}

fn library_in_dir(dir: &Path, name: &str) -> Option<PathBuf> {
    [
        format!("{name}.so"),
        format!("lib{name}.so"),
        name.to_string(),
    ]
    .into_iter()
    .map(|file| dir.join(file))
    .find(|path| path.is_file())
}
