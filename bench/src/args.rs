//! `--name value` options, parsed by hand (the helpers take only a few).

use std::collections::HashMap;
use std::str::FromStr;

pub struct Options {
    values: HashMap<String, String>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut values = HashMap::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("expected an option --name, got {arg:?}"))?;
            let value = iter
                .next()
                .ok_or_else(|| format!("option --{name} needs a value"))?;
            values.insert(name.to_string(), value.clone());
        }
        Ok(Self { values })
    }

    pub fn required<T: FromStr>(&self, name: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self
            .values
            .get(name)
            .ok_or_else(|| format!("missing option --{name}"))?;
        raw.parse()
            .map_err(|e| format!("option --{name} {raw:?}: {e}"))
    }

    pub fn optional<T: FromStr>(&self, name: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        if self.values.contains_key(name) {
            self.required(name)
        } else {
            Ok(default)
        }
    }

    pub fn key(&self, name: &str) -> Result<[u8; 32], String> {
        use base64::Engine;
        let raw: String = self.required(name)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .map_err(|e| format!("option --{name}: not base64: {e}"))?;
        bytes
            .try_into()
            .map_err(|_| format!("option --{name}: a key is 32 bytes"))
    }
}
