//! What was sent and what arrived: every observation the sandbox reports
//! is matched to the message it belongs to, and what is lost, doubled,
//! reordered, crossed into another customer's chat or changed on the way
//! is counted. Pure bookkeeping, no I/O.

use std::collections::HashMap;

use serde::Deserialize;

/// One customer message of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A text, identified by its line.
    Text,
    /// A PDF, identified by its file name.
    Document,
    /// A JPEG (the gateway names it), matched in order.
    Image,
    /// A voice note from the pool: a WAV attachment and a transcript.
    Voice {
        /// Index into the note pool.
        note: usize,
    },
}

/// What the agent sees of a voice note, known before the run.
#[derive(Debug, Clone)]
pub struct NoteFacts {
    /// Size of the WAV the transcoder makes of it.
    pub wav_bytes: u64,
    /// The words its DTMF digits are recognised as.
    pub words: String,
    /// Its length.
    pub seconds: f64,
}

/// Which arrival a latency is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Piece {
    /// A customer's text, visible to the agent.
    Text,
    /// A customer's file or converted voice note, visible to the agent.
    Attachment,
    /// A voice note's transcript, visible to the agent.
    Transcript,
    /// An agent's reply, sent to the customer on WhatsApp.
    Reply,
}

/// One arrival: when, and how long after the intended send.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// Which piece.
    pub piece: Piece,
    /// When it arrived (epoch µs).
    pub at_us: i64,
    /// Arrival minus the intended send time.
    pub latency_us: i64,
}

/// An observation as the sandbox's `/_sandbox/observed` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Observation {
    /// Position in the sandbox's log.
    pub seq: u64,
    /// When the sandbox saw it (epoch µs).
    pub at_us: i64,
    /// `agent_message`, `agent_attachment` or `customer_whats_app`.
    pub kind: String,
    /// The contact (agent side).
    #[serde(default)]
    pub contact_id: String,
    /// The recipient (WhatsApp side).
    #[serde(default)]
    pub to: String,
    /// Text, or file name.
    #[serde(default)]
    pub content: String,
    /// Attachment size.
    #[serde(default)]
    pub size: u64,
}

/// Problems found, by kind. Any of `lost`, `doubled`, `crossed` or
/// `wrong` fails the run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Problems {
    /// Pieces that never arrived.
    pub lost: u64,
    /// Pieces that arrived more than once.
    pub doubled: u64,
    /// Messages whose first piece arrived after a later message's.
    pub reordered: u64,
    /// Pieces that arrived in another customer's chat.
    pub crossed: u64,
    /// Pieces that arrived changed (wrong transcript or size).
    pub wrong: u64,
    /// Items of this run that matched no message.
    pub unmatched: u64,
    /// Customer messages the load generator could not publish.
    pub send_failures: u64,
}

#[derive(Debug, Clone)]
struct Message {
    kind: Kind,
    intended_us: i64,
    sent: bool,
    text: bool,
    attachment: bool,
    transcript: bool,
    reply_intended_us: Option<i64>,
    reply: bool,
    first_arrival: bool,
}

impl Message {
    fn complete(&self) -> bool {
        let customer_side = match self.kind {
            Kind::Text => self.text,
            Kind::Document | Kind::Image => self.attachment,
            Kind::Voice { .. } => self.attachment && self.transcript,
        };
        customer_side && (self.reply_intended_us.is_none() || self.reply)
    }
}

#[derive(Debug, Default)]
struct Conversation {
    messages: Vec<Message>,
    highest_first_arrival: Option<usize>,
}

/// The run's bookkeeping.
#[derive(Debug)]
pub struct Ledger {
    run: String,
    notes: Vec<NoteFacts>,
    conversations: Vec<Conversation>,
    contacts: HashMap<String, usize>,
    parked: HashMap<String, Vec<Observation>>,
    arrivals: Vec<Arrival>,
    problems: Problems,
    sent: u64,
}

/// The text line of message `seq` of conversation `conv` in run `run`.
pub fn text_line(run: &str, conv: usize, seq: usize) -> String {
    format!("lt {run} c{conv} m{seq}")
}

/// The file name of a document.
pub fn document_name(run: &str, conv: usize, seq: usize) -> String {
    format!("lt-{run}-c{conv}-m{seq}.pdf")
}

/// The text of the agent's reply to message `seq`.
pub fn reply_line(run: &str, conv: usize, seq: usize) -> String {
    format!("lt {run} c{conv} a{seq}")
}

/// Parses `lt <run> c<conv> <letter><seq>` of this run.
fn parse_line(run: &str, line: &str) -> Option<(usize, char, usize)> {
    let mut parts = line.trim().split(' ');
    if parts.next()? != "lt" || parts.next()? != run {
        return None;
    }
    let conv = parts.next()?.strip_prefix('c')?.parse().ok()?;
    let last = parts.next()?;
    let letter = last.chars().next()?;
    let seq = last[letter.len_utf8()..].parse().ok()?;
    parts.next().is_none().then_some((conv, letter, seq))
}

impl Ledger {
    /// An empty ledger for run `run` with `conversations` customers.
    pub fn new(run: &str, conversations: usize, notes: Vec<NoteFacts>) -> Self {
        Self {
            run: run.to_owned(),
            notes,
            conversations: (0..conversations)
                .map(|_| Conversation::default())
                .collect(),
            contacts: HashMap::new(),
            parked: HashMap::new(),
            arrivals: Vec::new(),
            problems: Problems::default(),
            sent: 0,
        }
    }

    /// The sequence number the next message of `conv` will get.
    pub fn next_seq(&self, conv: usize) -> usize {
        self.conversations[conv].messages.len()
    }

    /// The last message planned in `conv`.
    pub fn last_seq(&self, conv: usize) -> Option<usize> {
        self.conversations[conv].messages.len().checked_sub(1)
    }

    /// Voice notes published and not yet fully arrived.
    pub fn notes_in_flight(&self) -> u64 {
        self.published()
            .filter(|m| matches!(m.kind, Kind::Voice { .. }) && !m.complete())
            .count() as u64
    }

    /// Published messages fully arrived.
    pub fn complete_count(&self) -> u64 {
        self.published().filter(|m| m.complete()).count() as u64
    }

    /// Messages fully arrived, voice notes fully arrived, and the seconds
    /// of audio those notes held.
    pub fn completion(&self) -> (u64, u64, f64) {
        let mut notes = 0;
        let mut seconds = 0.0;
        for message in self.published().filter(|m| m.complete()) {
            if let Kind::Voice { note } = message.kind {
                notes += 1;
                seconds += self.notes[note].seconds;
            }
        }
        (self.complete_count(), notes, seconds)
    }

    fn published(&self) -> impl Iterator<Item = &Message> {
        self.conversations
            .iter()
            .flat_map(|c| c.messages.iter())
            .filter(|m| m.sent)
    }

    /// Plans the next message of conversation `conv`, intended at
    /// `intended_us`; its sequence number.
    pub fn plan(&mut self, conv: usize, kind: Kind, intended_us: i64) -> usize {
        let messages = &mut self.conversations[conv].messages;
        messages.push(Message {
            kind,
            intended_us,
            sent: false,
            text: false,
            attachment: false,
            transcript: false,
            reply_intended_us: None,
            reply: false,
            first_arrival: false,
        });
        messages.len() - 1
    }

    /// Message `seq` of `conv` was published (or failed to be).
    pub fn sent(&mut self, conv: usize, seq: usize, ok: bool) {
        if ok {
            self.conversations[conv].messages[seq].sent = true;
            self.sent += 1;
        } else {
            self.problems.send_failures += 1;
        }
    }

    /// The agent replied to message `seq` at `intended_us`.
    pub fn replied(&mut self, conv: usize, seq: usize, intended_us: i64) {
        self.conversations[conv].messages[seq].reply_intended_us = Some(intended_us);
    }

    /// The agent's reply to message `seq` could not be written.
    pub fn reply_failed(&mut self, conv: usize, seq: usize) {
        self.conversations[conv].messages[seq].reply_intended_us = None;
        self.problems.send_failures += 1;
    }

    /// Customer messages published so far.
    pub fn sent_count(&self) -> u64 {
        self.sent
    }

    /// Whether every published message of `conv` has fully arrived.
    pub fn settled(&self, conv: usize) -> bool {
        self.conversations[conv]
            .messages
            .iter()
            .all(|m| !m.sent || m.complete())
    }

    /// Whether every published message of the run has fully arrived.
    pub fn all_settled(&self) -> bool {
        (0..self.conversations.len()).all(|c| self.settled(c))
    }

    /// The contact conversation `conv` arrived on, once known.
    pub fn contact_of(&self, conv: usize) -> Option<String> {
        self.contacts
            .iter()
            .find(|(_, c)| **c == conv)
            .map(|(contact, _)| contact.clone())
    }

    /// Takes in one observation; the conversations it moved.
    pub fn observe(&mut self, observation: Observation) -> Vec<usize> {
        let mut touched = Vec::new();
        match observation.kind.as_str() {
            "agent_message" => self.agent_message(observation, &mut touched),
            "agent_attachment" => self.agent_attachment(observation, &mut touched),
            "customer_whats_app" => {
                if std::env::var_os("PARLEY_LOADTEST_DEBUG").is_some() {
                    eprintln!("whatsapp: {observation:?}");
                }
                if let Some((conv, 'a', seq)) = parse_line(&self.run, &observation.content) {
                    if self.customer_phone_matches(conv, &observation.to) {
                        self.arrive(conv, seq, Piece::Reply, observation.at_us);
                        touched.push(conv);
                    } else {
                        self.problems.crossed += 1;
                    }
                }
            }
            _ => {}
        }
        touched
    }

    fn customer_phone_matches(&self, conv: usize, to: &str) -> bool {
        // WhatsApp numbers are written with or without the leading '+'.
        conv < self.conversations.len()
            && crate::pipeline::traffic::phone(conv) == to.trim_start_matches('+')
    }

    fn agent_message(&mut self, observation: Observation, touched: &mut Vec<usize>) {
        let content = observation.content.clone();
        if content.starts_with("🎤") {
            let Some(&conv) = self.contacts.get(&observation.contact_id) else {
                return self.park(observation);
            };
            let words = content.split_once(":\n").map_or("", |(_, w)| w.trim());
            match self.next_voice(conv, |m| !m.transcript) {
                Some(seq) => {
                    let Kind::Voice { note } = self.conversations[conv].messages[seq].kind else {
                        return;
                    };
                    if self.notes[note].words != words {
                        self.problems.wrong += 1;
                    }
                    self.arrive(conv, seq, Piece::Transcript, observation.at_us);
                    touched.push(conv);
                }
                None => self.problems.unmatched += 1,
            }
            return;
        }
        for line in content.lines() {
            let Some((conv, 'm', seq)) = parse_line(&self.run, line) else {
                continue;
            };
            if conv >= self.conversations.len() || seq >= self.conversations[conv].messages.len() {
                self.problems.unmatched += 1;
                continue;
            }
            match self.contacts.get(&observation.contact_id) {
                Some(&known) if known != conv => {
                    self.problems.crossed += 1;
                    continue;
                }
                Some(_) => {}
                None => {
                    self.contacts.insert(observation.contact_id.clone(), conv);
                    for parked in self
                        .parked
                        .remove(&observation.contact_id)
                        .unwrap_or_default()
                    {
                        touched.extend(self.observe(parked));
                    }
                }
            }
            self.arrive(conv, seq, Piece::Text, observation.at_us);
            touched.push(conv);
        }
    }

    fn agent_attachment(&mut self, observation: Observation, touched: &mut Vec<usize>) {
        let Some(&conv) = self.contacts.get(&observation.contact_id) else {
            // Documents name their conversation; the rest wait for it.
            if let Some((conv, seq)) = self.document(&observation.content) {
                self.contacts.insert(observation.contact_id.clone(), conv);
                self.arrive(conv, seq, Piece::Attachment, observation.at_us);
                touched.push(conv);
                for parked in self
                    .parked
                    .remove(&observation.contact_id)
                    .unwrap_or_default()
                {
                    touched.extend(self.observe(parked));
                }
            } else {
                self.park(observation);
            }
            return;
        };
        let name = observation.content.as_str();
        let seq = if let Some((named, seq)) = self.document(name) {
            if named != conv {
                self.problems.crossed += 1;
                return;
            }
            Some(seq)
        } else if name.starts_with("image-") {
            self.next_of(conv, |m| m.kind == Kind::Image && !m.attachment)
        } else if name.ends_with(".wav") {
            let seq = self.next_voice(conv, |m| !m.attachment);
            if let Some(seq) = seq
                && let Kind::Voice { note } = self.conversations[conv].messages[seq].kind
                && self.notes[note].wav_bytes != observation.size
            {
                self.problems.wrong += 1;
            }
            seq
        } else {
            None
        };
        match seq {
            Some(seq) => {
                self.arrive(conv, seq, Piece::Attachment, observation.at_us);
                touched.push(conv);
            }
            None => self.problems.unmatched += 1,
        }
    }

    fn document(&self, name: &str) -> Option<(usize, usize)> {
        let stem = name.strip_suffix(".pdf")?;
        let rest = stem.strip_prefix("lt-")?.strip_prefix(self.run.as_str())?;
        let mut parts = rest.strip_prefix('-')?.split('-');
        let conv: usize = parts.next()?.strip_prefix('c')?.parse().ok()?;
        let seq: usize = parts.next()?.strip_prefix('m')?.parse().ok()?;
        (conv < self.conversations.len() && seq < self.conversations[conv].messages.len())
            .then_some((conv, seq))
    }

    fn next_voice(&self, conv: usize, open: impl Fn(&Message) -> bool) -> Option<usize> {
        self.next_of(conv, |m| matches!(m.kind, Kind::Voice { .. }) && open(m))
    }

    fn next_of(&self, conv: usize, wanted: impl Fn(&Message) -> bool) -> Option<usize> {
        self.conversations[conv]
            .messages
            .iter()
            .position(|m| m.sent && wanted(m))
    }

    fn park(&mut self, observation: Observation) {
        self.parked
            .entry(observation.contact_id.clone())
            .or_default()
            .push(observation);
    }

    fn arrive(&mut self, conv: usize, seq: usize, piece: Piece, at_us: i64) {
        let conversation = &mut self.conversations[conv];
        let Some(message) = conversation.messages.get_mut(seq) else {
            self.problems.unmatched += 1;
            return;
        };
        let flag = match piece {
            Piece::Text => &mut message.text,
            Piece::Attachment => &mut message.attachment,
            Piece::Transcript => &mut message.transcript,
            Piece::Reply => &mut message.reply,
        };
        if *flag {
            self.problems.doubled += 1;
            return;
        }
        *flag = true;
        let intended = match piece {
            Piece::Reply => message.reply_intended_us.unwrap_or(message.intended_us),
            _ => message.intended_us,
        };
        if piece != Piece::Reply && !message.first_arrival {
            message.first_arrival = true;
            if conversation.highest_first_arrival.is_some_and(|h| h > seq) {
                self.problems.reordered += 1;
            }
            conversation.highest_first_arrival = Some(
                conversation
                    .highest_first_arrival
                    .map_or(seq, |h| h.max(seq)),
            );
        }
        self.arrivals.push(Arrival {
            piece,
            at_us,
            latency_us: at_us - intended,
        });
    }

    /// Closes the books: whatever has not arrived is lost. The problems
    /// and every arrival.
    pub fn finish(mut self) -> (Problems, Vec<Arrival>) {
        let mut lost = 0;
        for (conv, conversation) in self.conversations.iter().enumerate() {
            let _ = conv;
            for message in conversation.messages.iter().filter(|m| m.sent) {
                let expected: &[bool] = match message.kind {
                    Kind::Text => &[message.text],
                    Kind::Document | Kind::Image => &[message.attachment],
                    Kind::Voice { .. } => &[message.attachment, message.transcript],
                };
                lost += expected.iter().filter(|arrived| !**arrived).count() as u64;
                if message.reply_intended_us.is_some() && !message.reply {
                    lost += 1;
                }
                if std::env::var_os("PARLEY_LOADTEST_DEBUG").is_some() && !message.complete() {
                    eprintln!("lost: {message:?}");
                }
            }
        }
        self.problems.lost = lost;
        self.problems.unmatched += self.parked.values().map(|p| p.len() as u64).sum::<u64>();
        (self.problems, self.arrivals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation(seq: u64, kind: &str, contact: &str, content: &str, size: u64) -> Observation {
        Observation {
            seq,
            at_us: 1_000 + seq as i64 * 1_000,
            kind: kind.into(),
            contact_id: contact.into(),
            to: String::new(),
            content: content.into(),
            size,
        }
    }

    fn notes() -> Vec<NoteFacts> {
        vec![NoteFacts {
            wav_bytes: 960_044,
            words: "four zero".into(),
            seconds: 30.0,
        }]
    }

    #[test]
    fn merged_texts_documents_and_voice_notes_are_matched_once() {
        let mut ledger = Ledger::new("r1", 2, notes());
        for kind in [
            Kind::Text,
            Kind::Text,
            Kind::Document,
            Kind::Voice { note: 0 },
        ] {
            let seq = ledger.plan(1, kind, 0);
            ledger.sent(1, seq, true);
        }
        assert!(!ledger.settled(1));
        ledger.observe(observation(
            1,
            "agent_message",
            "k",
            "lt r1 c1 m0\nlt r1 c1 m1",
            0,
        ));
        ledger.observe(observation(
            2,
            "agent_attachment",
            "k",
            "lt-r1-c1-m2.pdf",
            10,
        ));
        ledger.observe(observation(
            3,
            "agent_attachment",
            "k",
            "audio-1234.wav",
            960_044,
        ));
        assert!(!ledger.settled(1));
        ledger.observe(observation(
            4,
            "agent_message",
            "k",
            "🎤 Voice note (0:30), en-US, transcript:\nfour zero",
            0,
        ));
        assert!(ledger.settled(1));
        assert!(ledger.all_settled());
        let (problems, arrivals) = ledger.finish();
        assert_eq!(arrivals.len(), 5);
        assert_eq!(
            (
                problems.lost,
                problems.doubled,
                problems.wrong,
                problems.crossed
            ),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn losses_doubles_crossings_and_wrong_transcripts_are_counted() {
        let mut ledger = Ledger::new("r1", 2, notes());
        for conv in 0..2 {
            for kind in [Kind::Text, Kind::Voice { note: 0 }, Kind::Text] {
                let seq = ledger.plan(conv, kind, 0);
                ledger.sent(conv, seq, true);
            }
        }
        ledger.observe(observation(1, "agent_message", "a", "lt r1 c0 m0", 0));
        ledger.observe(observation(2, "agent_message", "a", "lt r1 c0 m0", 0));
        ledger.observe(observation(3, "agent_message", "b", "lt r1 c1 m0", 0));
        ledger.observe(observation(4, "agent_message", "b", "lt r1 c0 m2", 0));
        ledger.observe(observation(5, "agent_attachment", "a", "audio-1.wav", 5));
        ledger.observe(observation(
            6,
            "agent_message",
            "a",
            "🎤 Voice note (0:30), en-US, transcript:\nnine",
            0,
        ));
        // Another run's items are not this run's business.
        ledger.observe(observation(7, "agent_message", "a", "lt r0 c0 m9", 0));
        let (problems, _) = ledger.finish();
        assert_eq!(problems.doubled, 1);
        assert_eq!(problems.crossed, 1);
        assert_eq!(problems.wrong, 2, "a wrong WAV size and a wrong transcript");
        // c0 m2, c1's voice note (2 pieces) and c1 m2.
        assert_eq!(problems.lost, 4);
    }

    #[test]
    fn a_later_message_arriving_first_is_reordering() {
        let mut ledger = Ledger::new("r1", 1, notes());
        for _ in 0..3 {
            let seq = ledger.plan(0, Kind::Text, 0);
            ledger.sent(0, seq, true);
        }
        ledger.observe(observation(1, "agent_message", "a", "lt r1 c0 m0", 0));
        ledger.observe(observation(2, "agent_message", "a", "lt r1 c0 m2", 0));
        ledger.observe(observation(3, "agent_message", "a", "lt r1 c0 m1", 0));
        let (problems, _) = ledger.finish();
        assert_eq!(problems.reordered, 1);
        assert_eq!(problems.lost, 0);
    }

    #[test]
    fn attachments_before_the_first_text_wait_for_their_contact() {
        let mut ledger = Ledger::new("r1", 1, notes());
        for kind in [Kind::Image, Kind::Text] {
            let seq = ledger.plan(0, kind, 0);
            ledger.sent(0, seq, true);
        }
        ledger.observe(observation(1, "agent_attachment", "a", "image-ab12.jpg", 9));
        ledger.observe(observation(2, "agent_message", "a", "lt r1 c0 m1", 0));
        assert!(ledger.settled(0));
    }

    #[test]
    fn replies_reach_the_right_customer() {
        let mut ledger = Ledger::new("r1", 2, notes());
        let seq = ledger.plan(1, Kind::Text, 0);
        ledger.sent(1, seq, true);
        ledger.replied(1, seq, 5_000);
        ledger.observe(observation(1, "agent_message", "b", "lt r1 c1 m0", 0));
        assert!(!ledger.settled(1));
        let mut wrong = observation(2, "customer_whats_app", "", "lt r1 c1 a0", 0);
        wrong.to = crate::pipeline::traffic::phone(0);
        ledger.observe(wrong);
        let mut right = observation(3, "customer_whats_app", "", "lt r1 c1 a0", 0);
        right.to = crate::pipeline::traffic::phone(1);
        ledger.observe(right);
        assert!(ledger.settled(1));
        let (problems, arrivals) = ledger.finish();
        assert_eq!(problems.crossed, 1);
        assert_eq!(arrivals.last().map(|a| a.latency_us), Some(4_000 - 5_000));
    }
}
