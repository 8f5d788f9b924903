//! A client's `TranscriptionConfig`, validated into the settings of one
//! Transcribe stream. Pure: every rule Parley can check itself is checked
//! here, before any audio is read or any AWS call is made.

use parley_proto::transcriber as pb;

use crate::error::TranscribeError;

/// Which language to transcribe in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Language {
    /// One fixed language code, e.g. `en-US`.
    Fixed(String),
    /// Let Transcribe identify it among `options` (at least two).
    Identify {
        /// Candidate language codes.
        options: Vec<String>,
        /// The most likely candidate, if the caller knows one.
        preferred: Option<String>,
    },
}

/// How the audio is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Signed 16-bit little-endian mono PCM.
    Pcm,
    /// OGG/Opus.
    OggOpus,
}

/// PII handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pii {
    /// Leave PII alone.
    Off,
    /// Mark PII entities.
    Identify,
    /// Replace PII with `[PII]`.
    Redact,
}

/// Partial-results stabilisation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stability {
    /// Least stable, lowest latency.
    Low,
    /// In between.
    Medium,
    /// Most stable.
    High,
}

/// The validated settings of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// Fixed or identified language.
    pub language: Language,
    /// Sample rate of the audio, Hz.
    pub sample_rate_hz: u32,
    /// Encoding of the audio.
    pub encoding: Encoding,
    /// A custom vocabulary, if any.
    pub vocabulary_name: Option<String>,
    /// PII handling.
    pub pii: Pii,
    /// PII entity types (`NAME`, `PHONE`, …); empty for all.
    pub pii_entity_types: Vec<String>,
    /// Partial-results stabilisation, if enabled.
    pub partial_stability: Option<Stability>,
}

fn invalid(message: impl Into<String>) -> TranscribeError {
    TranscribeError::InvalidRequest(message.into())
}

/// A language code looks like `en-US` or `zh-CN` (Transcribe's form).
fn check_language_code(field: &str, code: &str) -> Result<String, TranscribeError> {
    let code = code.trim();
    let mut parts = code.split('-');
    let well_formed = matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(lang), Some(region), None)
            if (2..=3).contains(&lang.len())
                && lang.chars().all(|c| c.is_ascii_lowercase())
                && region.len() == 2
                && region.chars().all(|c| c.is_ascii_uppercase())
    );
    if well_formed {
        Ok(code.to_owned())
    } else {
        Err(invalid(format!(
            "{field} {code:?} is not a language code like en-US"
        )))
    }
}

impl StreamSettings {
    /// Validates a client's config.
    pub fn from_proto(config: pb::TranscriptionConfig) -> Result<Self, TranscribeError> {
        let language = match config.language {
            Some(pb::transcription_config::Language::LanguageCode(code)) => {
                Language::Fixed(check_language_code("language_code", &code)?)
            }
            Some(pb::transcription_config::Language::IdentifyLanguage(identify)) => {
                let options = identify
                    .language_options
                    .iter()
                    .map(|o| check_language_code("language_options", o))
                    .collect::<Result<Vec<_>, _>>()?;
                if options.len() < 2 {
                    return Err(invalid(
                        "identify_language needs at least two language_options",
                    ));
                }
                let preferred = match identify.preferred_language.trim() {
                    "" => None,
                    preferred => {
                        let preferred = check_language_code("preferred_language", preferred)?;
                        if !options.contains(&preferred) {
                            return Err(invalid(format!(
                                "preferred_language {preferred} is not one of language_options"
                            )));
                        }
                        Some(preferred)
                    }
                };
                Language::Identify { options, preferred }
            }
            None => {
                return Err(invalid("config needs language_code or identify_language"));
            }
        };
        if !(8_000..=48_000).contains(&config.sample_rate_hz) {
            return Err(invalid(format!(
                "sample_rate_hz {} is outside 8000..=48000",
                config.sample_rate_hz
            )));
        }
        let encoding = match pb::AudioEncoding::try_from(config.encoding) {
            Ok(pb::AudioEncoding::PcmS16le) => Encoding::Pcm,
            Ok(pb::AudioEncoding::OggOpus) => Encoding::OggOpus,
            _ => return Err(invalid("encoding must be PCM_S16LE or OGG_OPUS")),
        };
        let pii = match pb::PiiMode::try_from(config.pii_mode) {
            Ok(pb::PiiMode::None) => Pii::Off,
            Ok(pb::PiiMode::Identify) => Pii::Identify,
            Ok(pb::PiiMode::Redact) => Pii::Redact,
            Err(_) => return Err(invalid(format!("unknown pii_mode {}", config.pii_mode))),
        };
        if pii == Pii::Off && !config.pii_entity_types.is_empty() {
            return Err(invalid("pii_entity_types need pii_mode IDENTIFY or REDACT"));
        }
        let partial_stability = match pb::PartialStability::try_from(config.partial_stability) {
            Ok(pb::PartialStability::Unspecified) => None,
            Ok(pb::PartialStability::Low) => Some(Stability::Low),
            Ok(pb::PartialStability::Medium) => Some(Stability::Medium),
            Ok(pb::PartialStability::High) => Some(Stability::High),
            Err(_) => {
                return Err(invalid(format!(
                    "unknown partial_stability {}",
                    config.partial_stability
                )));
            }
        };
        let vocabulary_name =
            Some(config.vocabulary_name.trim().to_owned()).filter(|v| !v.is_empty());
        Ok(Self {
            language,
            sample_rate_hz: config.sample_rate_hz,
            encoding,
            vocabulary_name,
            pii,
            pii_entity_types: config.pii_entity_types,
            partial_stability,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::transcription_config::Language as L;

    fn config(language: L) -> pb::TranscriptionConfig {
        pb::TranscriptionConfig {
            language: Some(language),
            sample_rate_hz: 16_000,
            encoding: pb::AudioEncoding::PcmS16le as i32,
            ..Default::default()
        }
    }

    fn identify(options: &[&str], preferred: &str) -> L {
        L::IdentifyLanguage(pb::LanguageIdentification {
            language_options: options.iter().map(|o| o.to_string()).collect(),
            preferred_language: preferred.into(),
        })
    }

    #[test]
    fn accepts_a_fixed_language_and_identification() {
        let fixed = StreamSettings::from_proto(config(L::LanguageCode("en-US".into()))).unwrap();
        assert_eq!(fixed.language, Language::Fixed("en-US".into()));
        assert_eq!(fixed.encoding, Encoding::Pcm);
        assert_eq!(fixed.partial_stability, None);
        let identified =
            StreamSettings::from_proto(config(identify(&["en-US", "es-US"], "es-US"))).unwrap();
        assert_eq!(
            identified.language,
            Language::Identify {
                options: vec!["en-US".into(), "es-US".into()],
                preferred: Some("es-US".into())
            }
        );
    }

    #[test]
    fn refuses_what_transcribe_would_refuse() {
        let cases = [
            (
                pb::TranscriptionConfig::default(),
                "language_code or identify_language",
            ),
            (
                config(L::LanguageCode("english".into())),
                "not a language code",
            ),
            (config(identify(&["en-US"], "")), "at least two"),
            (config(identify(&["en-US", "es-US"], "fr-FR")), "not one of"),
            (
                pb::TranscriptionConfig {
                    sample_rate_hz: 96_000,
                    ..config(L::LanguageCode("en-US".into()))
                },
                "outside 8000..=48000",
            ),
            (
                pb::TranscriptionConfig {
                    encoding: 0,
                    ..config(L::LanguageCode("en-US".into()))
                },
                "PCM_S16LE or OGG_OPUS",
            ),
            (
                pb::TranscriptionConfig {
                    pii_entity_types: vec!["NAME".into()],
                    ..config(L::LanguageCode("en-US".into()))
                },
                "pii_mode",
            ),
            (
                pb::TranscriptionConfig {
                    partial_stability: 9,
                    ..config(L::LanguageCode("en-US".into()))
                },
                "partial_stability",
            ),
        ];
        for (config, expected) in cases {
            let error = StreamSettings::from_proto(config).unwrap_err();
            assert!(
                matches!(&error, TranscribeError::InvalidRequest(m) if m.contains(expected)),
                "{error} should mention {expected:?}"
            );
        }
    }
}
