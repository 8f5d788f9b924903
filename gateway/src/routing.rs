//! Routing: per business number, which Connect instance and flow a chat
//! opens on, how long bursts are debounced, the language of transcripts,
//! and what the customer sees (receipts, reactions, echoes). One TOML file
//! (env overrides for the defaults), validated as a whole — every problem
//! reported at once — and reloaded when it changes: a bad new file is
//! refused and the old one kept.
//!
//! ```toml
//! [defaults]
//! instance_id = "…"            # Connect instance
//! contact_flow_id = "…"        # inbound chat flow
//! buffer_ms = 2000             # debounce: flush 2 s after the last message…
//! max_wait_ms = 10000          # …but never later than 10 s after the first
//! language = "en-US"           # or language_options = ["en-US", "es-US"]
//!
//! [numbers."phone-number-id-0123…"]
//! meta_id = "106540352242922"  # Meta's numeric id of this number
//! contact_flow_id = "…"        # anything not given comes from [defaults]
//! ```

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use parley_identity::{BusinessNumber, NumberDirectory};
use serde::Deserialize;

/// What to do with messages to a number the file does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnknownNumbers {
    /// Route them with the defaults.
    #[default]
    Default,
    /// Refuse them (to the dead letters, with the reason).
    Refuse,
}

/// The reactions that tell the customer how their message is doing; an
/// empty emoji sends none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Reactions {
    /// When the gateway received it.
    pub received: String,
    /// When the agent's chat has it.
    pub delivered: String,
    /// When it could not be delivered.
    pub failed: String,
}

impl Default for Reactions {
    fn default() -> Self {
        Self {
            received: String::new(),
            delivered: String::new(),
            failed: "❌".into(),
        }
    }
}

/// One number's route, every field resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The business number.
    pub number: BusinessNumber,
    /// Connect instance.
    pub instance_id: String,
    /// Inbound contact flow.
    pub contact_flow_id: String,
    /// Chat duration, 60..=10080 minutes.
    pub chat_duration_minutes: u32,
    /// Transcription language, when fixed.
    pub language: String,
    /// Candidates for language identification (when two or more).
    pub language_options: Vec<String>,
    /// The most likely candidate.
    pub preferred_language: String,
    /// Debounce: flush this long after the latest message (0: off).
    pub buffer: Duration,
    /// … but never later than this after the first waiting one.
    pub max_wait: Duration,
    /// Quote a voice note's transcript back to the customer.
    pub echo_transcript: bool,
    /// How: `{transcript}` is replaced.
    pub echo_template: String,
    /// Mark customer messages read once delivered to the agent.
    pub mark_read: bool,
    /// Progress reactions on the customer's messages.
    pub reactions: Reactions,
    /// Forward reactions to the agent (else ignore them).
    pub forward_reactions: bool,
    /// Forward stickers to the agent (else ignore them).
    pub forward_stickers: bool,
    /// Sent to the customer when the agent ends the chat (empty: none).
    pub goodbye: String,
    /// Show WhatsApp's typing indicator while the agent types.
    pub typing_indicator: bool,
    /// Agents and bots write markdown (else their text is sent as is).
    pub markdown: bool,
}

/// A number's section, or the defaults: every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Section {
    meta_id: Option<String>,
    instance_id: Option<String>,
    contact_flow_id: Option<String>,
    chat_duration_minutes: Option<u32>,
    language: Option<String>,
    language_options: Option<Vec<String>>,
    preferred_language: Option<String>,
    buffer_ms: Option<u64>,
    max_wait_ms: Option<u64>,
    echo_transcript: Option<bool>,
    echo_template: Option<String>,
    mark_read: Option<bool>,
    reactions: Option<Reactions>,
    forward_reactions: Option<bool>,
    forward_stickers: Option<bool>,
    goodbye: Option<String>,
    typing_indicator: Option<bool>,
    markdown: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct File {
    unknown_numbers: UnknownNumbers,
    defaults: Section,
    numbers: BTreeMap<String, Section>,
}

/// Every route, validated.
#[derive(Debug, Clone)]
pub struct Routing {
    defaults: Route,
    routes: BTreeMap<BusinessNumber, Route>,
    unknown: UnknownNumbers,
    directory: NumberDirectory,
}

/// Why a message cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RouteError(pub String);

impl Routing {
    /// Parses and validates a routing file's text, with `env` overriding
    /// the defaults (`PARLEY_DEFAULT_<FIELD>`); every problem at once.
    pub fn parse(
        text: &str,
        env: &dyn parley_runtime::config::EnvSource,
    ) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let file: File = match toml::from_str(text) {
            Ok(file) => file,
            Err(e) => return Err(vec![format!("the routing file is not valid: {e}")]),
        };
        let mut defaults = file.defaults.clone();
        apply_env(&mut defaults, env, &mut problems);
        // The defaults are a route of their own only when unknown numbers
        // use them; otherwise they only fill in the numbers' sections.
        let mut base_problems = Vec::new();
        let base = resolve(
            "defaults",
            &Section::default(),
            &defaults,
            None,
            &mut base_problems,
        );
        if file.unknown_numbers == UnknownNumbers::Default {
            if base.instance_id.is_empty() || base.contact_flow_id.is_empty() {
                base_problems.push(
                    "[defaults].instance_id and contact_flow_id are required (or set unknown_numbers = \"refuse\" and configure every number)"
                        .into(),
                );
            }
            problems.extend(base_problems);
        }
        let mut routes = BTreeMap::new();
        let mut directory = NumberDirectory::new();
        for (name, section) in &file.numbers {
            let number = match BusinessNumber::parse(name) {
                Ok(number) => number,
                Err(e) => {
                    problems.push(format!("[numbers.\"{name}\"]: {e}"));
                    continue;
                }
            };
            if let Some(meta) = &section.meta_id
                && let Err(e) = directory.insert(meta, number.as_str())
            {
                problems.push(format!("[numbers.\"{name}\"].meta_id: {e}"));
            }
            let route = resolve(
                name,
                section,
                &defaults,
                Some(number.clone()),
                &mut problems,
            );
            routes.insert(number, route);
        }
        if problems.is_empty() {
            Ok(Self {
                defaults: base,
                routes,
                unknown: file.unknown_numbers,
                directory,
            })
        } else {
            Err(problems)
        }
    }

    /// Reads and validates the file at `path`.
    pub fn load(
        path: &Path,
        env: &dyn parley_runtime::config::EnvSource,
    ) -> Result<Self, Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
        Self::parse(&text, env)
    }

    /// The route of `number`: its own, or the defaults (unless unknown
    /// numbers are refused).
    pub fn route(&self, number: &BusinessNumber) -> Result<Route, RouteError> {
        if let Some(route) = self.routes.get(number) {
            return Ok(route.clone());
        }
        match self.unknown {
            UnknownNumbers::Default if !self.defaults.instance_id.is_empty() => Ok(Route {
                number: number.clone(),
                ..self.defaults.clone()
            }),
            _ => Err(RouteError(format!(
                "business number {number} is not configured (unknown_numbers = \"refuse\")"
            ))),
        }
    }

    /// The Meta phone-number ids the file maps.
    pub fn directory(&self) -> &NumberDirectory {
        &self.directory
    }
}

fn apply_env(
    section: &mut Section,
    env: &dyn parley_runtime::config::EnvSource,
    problems: &mut Vec<String>,
) {
    let var = |name: &str| env.var(&format!("PARLEY_DEFAULT_{}", name.to_ascii_uppercase()));
    let number = |name: &str, problems: &mut Vec<String>| -> Option<u64> {
        let raw = var(name)?;
        match raw.trim().parse() {
            Ok(n) => Some(n),
            Err(e) => {
                problems.push(format!(
                    "PARLEY_DEFAULT_{} = {raw:?}: {e}",
                    name.to_ascii_uppercase()
                ));
                None
            }
        }
    };
    if let Some(v) = var("instance_id") {
        section.instance_id = Some(v);
    }
    if let Some(v) = var("contact_flow_id") {
        section.contact_flow_id = Some(v);
    }
    if let Some(v) = var("language") {
        section.language = Some(v);
    }
    if let Some(v) = number("buffer_ms", problems) {
        section.buffer_ms = Some(v);
    }
    if let Some(v) = number("max_wait_ms", problems) {
        section.max_wait_ms = Some(v);
    }
    if let Some(v) = number("chat_duration_minutes", problems) {
        section.chat_duration_minutes = Some(v as u32);
    }
}

/// A number's route: its section over the defaults, checked.
fn resolve(
    name: &str,
    section: &Section,
    defaults: &Section,
    number: Option<BusinessNumber>,
    problems: &mut Vec<String>,
) -> Route {
    macro_rules! pick {
        ($field:ident, $default:expr) => {
            section
                .$field
                .clone()
                .or_else(|| defaults.$field.clone())
                .unwrap_or_else(|| $default)
        };
    }
    let route = Route {
        number: number.unwrap_or_else(|| {
            BusinessNumber::parse("phone-number-id-default").expect("a valid placeholder")
        }),
        instance_id: pick!(instance_id, String::new()),
        contact_flow_id: pick!(contact_flow_id, String::new()),
        chat_duration_minutes: pick!(chat_duration_minutes, 1_500),
        language: pick!(language, String::new()),
        language_options: pick!(language_options, Vec::new()),
        preferred_language: pick!(preferred_language, String::new()),
        buffer: Duration::from_millis(pick!(buffer_ms, 2_000)),
        max_wait: Duration::from_millis(pick!(max_wait_ms, 10_000)),
        echo_transcript: pick!(echo_transcript, false),
        echo_template: pick!(echo_template, "🔊 _{transcript}_".to_owned()),
        mark_read: pick!(mark_read, true),
        reactions: pick!(reactions, Reactions::default()),
        forward_reactions: pick!(forward_reactions, true),
        forward_stickers: pick!(forward_stickers, true),
        goodbye: pick!(goodbye, String::new()),
        typing_indicator: pick!(typing_indicator, false),
        markdown: pick!(markdown, true),
    };
    let at = |field: &str| {
        if name == "defaults" {
            format!("[defaults].{field}")
        } else {
            format!("[numbers.\"{name}\"].{field}")
        }
    };
    if name != "defaults" && (route.instance_id.is_empty() || route.contact_flow_id.is_empty()) {
        problems.push(format!(
            "{} and contact_flow_id are required (here or in [defaults])",
            at("instance_id")
        ));
    }
    if !(60..=10_080).contains(&route.chat_duration_minutes) {
        problems.push(format!(
            "{}: must be within 60..=10080",
            at("chat_duration_minutes")
        ));
    }
    if route.language.is_empty() && route.language_options.len() < 2 {
        problems.push(format!(
            "{}: set a language, or at least two language_options",
            at("language")
        ));
    }
    if !route.language.is_empty() && !route.language_options.is_empty() {
        problems.push(format!(
            "{}: set language or language_options, not both",
            at("language")
        ));
    }
    if !route.preferred_language.is_empty()
        && !route.language_options.contains(&route.preferred_language)
    {
        problems.push(format!(
            "{}: must be one of language_options",
            at("preferred_language")
        ));
    }
    if route.max_wait < route.buffer && !route.max_wait.is_zero() {
        problems.push(format!("{}: must be at least buffer_ms", at("max_wait_ms")));
    }
    if route.max_wait > Duration::from_secs(300) || route.buffer > Duration::from_secs(300) {
        problems.push(format!(
            "{}: buffering over 5 minutes keeps customers waiting",
            at("max_wait_ms")
        ));
    }
    if route.echo_transcript && !route.echo_template.contains("{transcript}") {
        problems.push(format!(
            "{}: must contain {{transcript}}",
            at("echo_template")
        ));
    }
    route
}

/// The routing in force, reloaded when its file changes.
#[derive(Clone)]
pub struct LiveRouting {
    current: Arc<RwLock<Arc<Routing>>>,
}

impl LiveRouting {
    /// Routing that never changes.
    pub fn fixed(routing: Routing) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(routing))),
        }
    }

    /// The routing in force now.
    pub fn get(&self) -> Arc<Routing> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Watches `path` (every `interval`): a changed file that validates
    /// replaces the routing; one that does not is refused, with every
    /// reason logged, and the routing in force stays.
    pub fn watch(self, path: PathBuf, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
            let mut seen: Option<SystemTime> = modified(&path);
            loop {
                tokio::time::sleep(interval).await;
                let now = modified(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                match Routing::load(&path, &parley_runtime::config::ProcessEnv) {
                    Ok(routing) => {
                        *self.current.write().unwrap_or_else(|e| e.into_inner()) =
                            Arc::new(routing);
                        tracing::info!(file = %path.display(), "routing reloaded");
                    }
                    Err(problems) => tracing::warn!(
                        file = %path.display(),
                        problems = %problems.join("; "),
                        "routing file refused; the previous routing stays in force"
                    ),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const NUMBER: &str = "phone-number-id-0123456789abcdef0123456789abcdef";

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn numbers_inherit_the_defaults_and_override_them() {
        let routing = Routing::parse(
            &format!(
                r#"
                [defaults]
                instance_id = "i-1"
                contact_flow_id = "f-1"
                language = "en-US"
                buffer_ms = 1500

                [numbers."{NUMBER}"]
                meta_id = "106540352242922"
                contact_flow_id = "f-sales"
                language_options = ["es-US", "en-US"]
                language = ""
                buffer_ms = 0
                "#
            ),
            &env(&[]),
        )
        .unwrap();
        let number = BusinessNumber::parse(NUMBER).unwrap();
        let route = routing.route(&number).unwrap();
        assert_eq!(route.instance_id, "i-1");
        assert_eq!(route.contact_flow_id, "f-sales");
        assert_eq!(
            route.buffer,
            Duration::ZERO,
            "buffering off for this number"
        );
        assert_eq!(route.language_options, ["es-US", "en-US"]);
        assert_eq!(
            routing.directory().resolve("106540352242922").unwrap(),
            number
        );
        let other = BusinessNumber::parse("phone-number-id-ffff").unwrap();
        let fallback = routing.route(&other).unwrap();
        assert_eq!(fallback.contact_flow_id, "f-1");
        assert_eq!(fallback.buffer, Duration::from_millis(1_500));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let problems = Routing::parse(
            &format!(
                r#"
                [defaults]
                instance_id = "i-1"
                contact_flow_id = "f-1"
                chat_duration_minutes = 5
                language = "en-US"
                echo_transcript = true
                echo_template = "no placeholder"

                [numbers."not-a-number"]
                [numbers."{NUMBER}"]
                meta_id = "abc"
                buffer_ms = 9000
                max_wait_ms = 1000
                "#
            ),
            &env(&[("PARLEY_DEFAULT_BUFFER_MS", "soon")]),
        )
        .unwrap_err();
        let text = problems.join("\n");
        for expected in [
            "chat_duration_minutes",
            "echo_template",
            "not-a-number",
            "meta_id",
            "max_wait_ms",
            "PARLEY_DEFAULT_BUFFER_MS",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
    }

    #[test]
    fn env_overrides_the_defaults_and_unknown_numbers_can_be_refused() {
        let routing = Routing::parse(
            &format!(
                r#"
                unknown_numbers = "refuse"
                [defaults]
                contact_flow_id = "f-1"
                language = "en-US"
                [numbers."{NUMBER}"]
                "#
            ),
            &env(&[("PARLEY_DEFAULT_INSTANCE_ID", "i-env")]),
        )
        .unwrap();
        let route = routing
            .route(&BusinessNumber::parse(NUMBER).unwrap())
            .unwrap();
        assert_eq!(route.instance_id, "i-env");
        let refused = routing
            .route(&BusinessNumber::parse("phone-number-id-ffff").unwrap())
            .unwrap_err();
        assert!(refused.0.contains("not configured"));
        assert!(Routing::parse("unknown_field = 1", &env(&[])).is_err());
    }
}
