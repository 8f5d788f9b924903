//! When each audio event may be sent. A voice note is already complete, so
//! by default events go as fast as Transcribe accepts them (the AWS sample
//! paced in real time and spent ~15 s on a 30 s note). Accounts that need
//! it can pace at a multiple of real time.

use std::time::Duration;

/// The pacing policy for audio events.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Send each event as soon as the previous one was accepted.
    AsFastAsAccepted,
    /// Send audio at `multiplier` × real time (1.0 = real time, 4.0 = 4×).
    RealTime {
        /// How many seconds of audio go per second of wall time (> 0).
        multiplier: f64,
    },
}

impl Pacing {
    /// The policy for a configured multiplier: 0 means unpaced.
    pub fn from_multiplier(multiplier: f64) -> Self {
        if multiplier > 0.0 {
            Self::RealTime { multiplier }
        } else {
            Self::AsFastAsAccepted
        }
    }

    /// How long after the first event the event starting at `audio_sent`
    /// (audio already sent before it) may go; `None` for "now".
    pub fn release_after(&self, audio_sent: Duration) -> Option<Duration> {
        match *self {
            Self::AsFastAsAccepted => None,
            Self::RealTime { multiplier } => Some(audio_sent.div_f64(multiplier)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpaced_by_default_and_scaled_otherwise() {
        assert_eq!(Pacing::from_multiplier(0.0), Pacing::AsFastAsAccepted);
        assert_eq!(
            Pacing::AsFastAsAccepted.release_after(Duration::from_secs(9)),
            None
        );
        let real_time = Pacing::from_multiplier(1.0);
        assert_eq!(
            real_time.release_after(Duration::from_millis(2_500)),
            Some(Duration::from_millis(2_500))
        );
        let fast = Pacing::from_multiplier(4.0);
        assert_eq!(
            fast.release_after(Duration::from_secs(30)),
            Some(Duration::from_millis(7_500))
        );
    }
}
