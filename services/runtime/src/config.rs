//! Settings from the environment, with an optional TOML file underneath.
//!
//! Every setting has one name. In the environment it is `PARLEY_<NAME>` in
//! upper case (`PARLEY_REQUEST_TIMEOUT_MS`); in the file named by
//! `PARLEY_CONFIG_FILE` it is the lower-case name (`request_timeout_ms = 500`).
//! The environment wins. A [`Settings`] reader collects every bad setting and
//! [`Settings::finish`] reports them all at once, so an operator fixes a
//! deployment in one round instead of one error per restart.

use std::{collections::HashMap, fmt, path::PathBuf, str::FromStr, time::Duration};

/// Where raw variables come from; tests pass a map instead of the process env.
pub trait EnvSource: Send + Sync {
    /// The value of `key`, if set.
    fn var(&self, key: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl EnvSource for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

/// One or more settings that could not be used, named with the variable the
/// operator has to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// One line per bad setting.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.problems.join("; "))
    }
}

impl std::error::Error for ConfigError {}

/// Reads typed settings and remembers every problem it meets.
pub struct Settings<'a> {
    env: &'a dyn EnvSource,
    file: toml::Table,
    problems: Vec<String>,
}

impl<'a> Settings<'a> {
    /// Opens the settings, loading `PARLEY_CONFIG_FILE` when it is set.
    pub fn new(env: &'a dyn EnvSource) -> Self {
        let mut problems = Vec::new();
        let file = match env.var("PARLEY_CONFIG_FILE") {
            Some(path) => match std::fs::read_to_string(&path) {
                Ok(text) => text.parse::<toml::Table>().unwrap_or_else(|e| {
                    problems.push(format!("PARLEY_CONFIG_FILE {path}: not valid TOML: {e}"));
                    toml::Table::new()
                }),
                Err(e) => {
                    problems.push(format!("PARLEY_CONFIG_FILE {path}: cannot read: {e}"));
                    toml::Table::new()
                }
            },
            None => toml::Table::new(),
        };
        Self {
            env,
            file,
            problems,
        }
    }

    /// The environment variable that sets `name`.
    pub fn env_name(name: &str) -> String {
        format!("PARLEY_{}", name.to_ascii_uppercase())
    }

    /// The raw text of a setting: environment first, then the file.
    pub fn raw(&self, name: &str) -> Option<String> {
        if let Some(value) = self.env.var(&Self::env_name(name)) {
            return Some(value);
        }
        self.file.get(name).map(|value| match value {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// A raw variable outside the `PARLEY_` namespace (e.g. `OTEL_SERVICE_NAME`).
    pub fn external(&self, key: &str) -> Option<String> {
        self.env.var(key).filter(|v| !v.is_empty())
    }

    /// A setting parsed with `FromStr`, or `default` when unset.
    pub fn parse<T>(&mut self, name: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.parse_optional(name).unwrap_or(default)
    }

    /// A setting parsed with `FromStr`, or `None` when unset or bad.
    pub fn parse_optional<T>(&mut self, name: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let raw = self.raw(name)?;
        match raw.trim().parse::<T>() {
            Ok(value) => Some(value),
            Err(e) => {
                self.problems
                    .push(format!("{} = {raw:?}: {e}", Self::env_name(name)));
                None
            }
        }
    }

    /// A duration given in milliseconds (`<name>` ends in `_ms`).
    pub fn millis(&mut self, name: &str, default: Duration) -> Duration {
        self.parse_optional::<u64>(name)
            .map(Duration::from_millis)
            .unwrap_or(default)
    }

    /// A boolean: `true/false`, `1/0`, `yes/no`, `on/off`.
    pub fn flag(&mut self, name: &str, default: bool) -> bool {
        let Some(raw) = self.raw(name) else {
            return default;
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                self.problems.push(format!(
                    "{} = {raw:?}: expected true or false",
                    Self::env_name(name)
                ));
                default
            }
        }
    }

    /// A path to a file that must exist when the setting is given.
    pub fn existing_file(&mut self, name: &str) -> Option<PathBuf> {
        let raw = self.raw(name).filter(|v| !v.is_empty())?;
        let path = PathBuf::from(&raw);
        if path.is_file() {
            Some(path)
        } else {
            self.problems
                .push(format!("{} = {raw:?}: no such file", Self::env_name(name)));
            None
        }
    }

    /// Records a problem found by the caller's own validation.
    pub fn problem(&mut self, name: &str, message: impl fmt::Display) {
        self.problems
            .push(format!("{}: {message}", Self::env_name(name)));
    }

    /// Ends reading: `Err` lists every problem met.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }
}

/// Refuses to start on a configuration with problems, naming each setting
/// by its environment variable: the check a crate's `run` makes on a
/// configuration built in code (tests, `parley-local`) as well as from the
/// environment.
pub fn refuse_problems<N: AsRef<str>>(
    problems: impl IntoIterator<Item = (N, String)>,
) -> anyhow::Result<()> {
    let lines: Vec<String> = problems
        .into_iter()
        .map(|(name, problem)| format!("{}: {problem}", Settings::env_name(name.as_ref())))
        .collect();
    if lines.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("invalid configuration: {}", lines.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_typed_values_and_defaults() {
        let env = env(&[("PARLEY_LIMIT", "7"), ("PARLEY_ON", "yes")]);
        let mut settings = Settings::new(&env);
        assert_eq!(settings.parse("limit", 1u32), 7);
        assert_eq!(settings.parse("missing", 3u32), 3);
        assert!(settings.flag("on", false));
        assert_eq!(
            settings.millis("timeout_ms", Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert!(settings.finish().is_ok());
    }

    #[test]
    fn reports_every_bad_setting_at_once() {
        let env = env(&[
            ("PARLEY_LIMIT", "many"),
            ("PARLEY_ON", "perhaps"),
            ("PARLEY_TLS_CERT", "/nonexistent/cert.pem"),
        ]);
        let mut settings = Settings::new(&env);
        settings.parse("limit", 1u32);
        settings.flag("on", false);
        settings.existing_file("tls_cert");
        let err = settings.finish().unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        let text = err.to_string();
        assert!(text.contains("PARLEY_LIMIT"), "{text}");
        assert!(text.contains("PARLEY_ON"), "{text}");
        assert!(text.contains("PARLEY_TLS_CERT"), "{text}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("parley-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("parley.toml");
        std::fs::write(&file, "limit = 5\nname = \"from-file\"\n").unwrap();
        let env = env(&[
            ("PARLEY_CONFIG_FILE", file.to_str().unwrap()),
            ("PARLEY_NAME", "from-env"),
        ]);
        let mut settings = Settings::new(&env);
        assert_eq!(settings.parse("limit", 1u32), 5);
        assert_eq!(settings.raw("name").as_deref(), Some("from-env"));
        assert!(settings.finish().is_ok());
    }

    #[test]
    fn unreadable_config_file_is_reported() {
        let env = env(&[("PARLEY_CONFIG_FILE", "/nonexistent/parley.toml")]);
        let err = Settings::new(&env).finish().unwrap_err();
        assert!(err.to_string().contains("PARLEY_CONFIG_FILE"));
    }
}
