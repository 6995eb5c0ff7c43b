//! What every entry point shares: panic catching, logging setup, and copying between the
//! caller's memory and safe Rust values. All raw-pointer access of the module is here and in
//! the entry points next to it.

use crate::token::attributes::Template;
use crate::token::error::{rv_name, Error};
use pkcs11_sys::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

/// Most attributes one template may carry; far more than any real caller uses, and a bound on
/// what a garbage count can make us read.
const MAX_TEMPLATE: CK_ULONG = 1024;
/// Largest attribute value accepted from a caller.
const MAX_VALUE: CK_ULONG = 64 * 1024;

/// Environment variable holding an env_logger filter (e.g. `debug`).
pub const LOG_ENV: &str = "PKCS11_SE050_LOG";

/// Runs one entry point: sets up logging once, turns a panic into CKR_GENERAL_ERROR (a panic
/// unwinding into C would abort the host program), and the result into a CK_RV.
pub fn guard(name: &str, f: impl FnOnce() -> Result<(), Error>) -> CK_RV {
    init_logging();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(e)) => {
            log::debug!("{name} -> {}", rv_name(e.rv()));
            e.rv()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            log::error!("{name}: internal error (panic: {what}); returning CKR_GENERAL_ERROR");
            CKR_GENERAL_ERROR
        }
    }
}

/// The module's logger: a static, so that nothing is allocated for it. A boxed logger (what
/// env_logger installs) is leaked by design of `log` and was lost at every dlclose of the
/// module (232 bytes under valgrind); a static lives in the library's own data and goes with it.
struct ModuleLogger;

static LOGGER: ModuleLogger = ModuleLogger;

impl log::Log for ModuleLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            use std::io::Write;
            // Written in one call to the locked stderr: no buffer kept between records.
            let _ = writeln!(
                std::io::stderr().lock(),
                "pkcs11-se050: {}: {}",
                record.level(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// The level `$PKCS11_SE050_LOG` asks for: a level name (`error`, `warn`, `info`, `debug`,
/// `trace`, `off`); for an env_logger filter such as `pkcs11_se050=debug` the level after the
/// last `=` of its directives. Errors only when unset or unreadable.
fn level_from(value: Option<&str>) -> log::LevelFilter {
    let Some(value) = value else {
        return log::LevelFilter::Error;
    };
    value
        .split(',')
        .filter_map(|directive| directive.rsplit('=').next())
        .filter_map(|level| level.trim().parse::<log::LevelFilter>().ok())
        .max()
        .unwrap_or(log::LevelFilter::Error)
}

/// Quiet by default: only errors (what the user must fix), on stderr, prefixed with the module.
pub(crate) fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let wanted = std::env::var(LOG_ENV).ok();
        // Another logger may already be installed by the host program: then it decides.
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(level_from(wanted.as_deref()));
        }
    });
}

#[cfg(test)]
mod log_tests {
    use super::level_from;
    use log::LevelFilter;

    #[test]
    fn log_levels_from_the_environment() {
        assert_eq!(level_from(None), LevelFilter::Error);
        assert_eq!(level_from(Some("debug")), LevelFilter::Debug);
        assert_eq!(level_from(Some("pkcs11_se050=info")), LevelFilter::Info);
        assert_eq!(
            level_from(Some("warn,pkcs11_se050=trace")),
            LevelFilter::Trace
        );
        assert_eq!(level_from(Some("nonsense")), LevelFilter::Error);
        assert_eq!(level_from(Some("off")), LevelFilter::Off);
    }
}

pub fn bad(why: &str) -> Error {
    log::debug!("bad arguments: {why}");
    Error(CKR_ARGUMENTS_BAD)
}

/// Writes `value` through an out pointer, refusing NULL.
///
/// # Safety
/// `out` must be NULL or valid for a write of `T` (the caller's contract in PKCS#11).
pub unsafe fn write_out<T>(out: *mut T, value: T, what: &str) -> Result<(), Error> {
    if out.is_null() {
        return Err(bad(what));
    }
    // SAFETY: non-NULL and, by the PKCS#11 contract, points to a writable T.
    unsafe { out.write_unaligned(value) };
    Ok(())
}

/// Copies `len` bytes from the caller; NULL is fine only for an empty buffer.
///
/// # Safety
/// `ptr` must be NULL or valid for reads of `len` bytes.
pub unsafe fn bytes_in(ptr: *const u8, len: CK_ULONG, what: &str) -> Result<Vec<u8>, Error> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(bad(what));
    }
    if len > MAX_VALUE {
        return Err(bad(&format!("{what}: {len} bytes is implausibly long")));
    }
    // SAFETY: non-NULL, and the caller promises `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len as usize) }.to_vec())
}

/// Copies a caller template (type and value of each entry) into safe memory.
///
/// # Safety
/// `ptr` must be NULL or point to `count` CK_ATTRIBUTEs whose values are readable.
pub unsafe fn template_in(ptr: *const CK_ATTRIBUTE, count: CK_ULONG) -> Result<Template, Error> {
    if count == 0 {
        return Ok(Template::default());
    }
    if ptr.is_null() {
        return Err(bad("template is NULL with a non-zero count"));
    }
    if count > MAX_TEMPLATE {
        return Err(bad("template count is implausibly large"));
    }
    // SAFETY: non-NULL and the caller promises `count` entries.
    let raw = unsafe { std::slice::from_raw_parts(ptr, count as usize) };
    let mut entries = Vec::with_capacity(raw.len());
    for a in raw {
        // SAFETY: the caller promises pValue readable for ulValueLen bytes.
        let value = unsafe {
            bytes_in(
                a.pValue as *const u8,
                a.ulValueLen,
                "attribute value is NULL",
            )
        }?;
        entries.push((a.type_, value));
    }
    Ok(Template::new(entries))
}

/// A fixed-size, blank-padded PKCS#11 text field (no terminator).
pub fn padded<const N: usize>(text: &str) -> [u8; N] {
    let mut out = [b' '; N];
    let mut end = text.len().min(N);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&text.as_bytes()[..end]);
    out
}

pub fn version((major, minor): (u8, u8)) -> CK_VERSION {
    CK_VERSION { major, minor }
}

/// Fills a caller's array of ulongs the PKCS#11 way: NULL asks for the count; too small a
/// buffer gets the count and CKR_BUFFER_TOO_SMALL.
///
/// # Safety
/// `count` must be valid for read and write; `list` NULL or valid for `*count` writes.
pub unsafe fn ulong_list_out(
    list: *mut CK_ULONG,
    count: *mut CK_ULONG,
    items: &[CK_ULONG],
) -> Result<(), Error> {
    if count.is_null() {
        return Err(bad("count pointer is NULL"));
    }
    let n = items.len() as CK_ULONG;
    // SAFETY: count checked non-NULL; caller promises it is valid.
    let room = unsafe { count.read_unaligned() };
    // SAFETY: as above.
    unsafe { count.write_unaligned(n) };
    if list.is_null() {
        return Ok(());
    }
    if room < n {
        return Err(Error(CKR_BUFFER_TOO_SMALL));
    }
    for (i, item) in items.iter().enumerate() {
        // SAFETY: the caller's buffer holds `room` >= n entries.
        unsafe { list.add(i).write_unaligned(*item) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_general_error() {
        assert_eq!(guard("t", || panic!("boom")), CKR_GENERAL_ERROR);
        assert_eq!(
            guard("t", || Err(Error(CKR_ARGUMENTS_BAD))),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(guard("t", || Ok(())), CKR_OK);
    }

    #[test]
    fn padding_is_blank_and_cut_on_char_boundaries() {
        assert_eq!(&padded::<6>("ab"), b"ab    ");
        assert_eq!(&padded::<3>("abcdef"), b"abc");
        assert_eq!(&padded::<3>("aé"), b"a\xc3\xa9");
        assert_eq!(&padded::<2>("aé"), b"a ");
    }

    #[test]
    fn templates_copy_and_refuse_null_values() {
        let value = [1u8];
        let attrs = [CK_ATTRIBUTE {
            type_: CKA_TOKEN,
            pValue: value.as_ptr() as *mut _,
            ulValueLen: 1,
        }];
        // SAFETY: attrs and value live for the call.
        let t = unsafe { template_in(attrs.as_ptr(), 1) }.unwrap();
        assert_eq!(t.get(CKA_TOKEN), Some(&[1u8][..]));
        let null = [CK_ATTRIBUTE {
            type_: CKA_TOKEN,
            pValue: std::ptr::null_mut(),
            ulValueLen: 1,
        }];
        // SAFETY: a NULL value is what is being tested; it is not read.
        assert_eq!(
            unsafe { template_in(null.as_ptr(), 1) }.unwrap_err().rv(),
            CKR_ARGUMENTS_BAD
        );
        // SAFETY: NULL template with count 1 is refused before any read.
        assert_eq!(
            unsafe { template_in(std::ptr::null(), 1) }
                .unwrap_err()
                .rv(),
            CKR_ARGUMENTS_BAD
        );
    }
}
