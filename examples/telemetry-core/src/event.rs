//! Telemetry events: validation of a request body, and the record that is stored.

use std::error::Error;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The largest request body accepted by `POST /telemetry`: 64 KiB. Larger bodies are
/// answered with `413 Payload Too Large`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest `id` accepted, in characters (not bytes).
pub const MAX_ID_CHARS: usize = 128;

/// A valid telemetry event, as posted: `{"id": "...", "satellite": "...", "value": 1.5}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// The event's unique id: 1 to [`MAX_ID_CHARS`] characters. A repeated id is
    /// stored once.
    pub id: String,
    /// The satellite it comes from.
    pub satellite: String,
    /// The measurement (a finite number).
    pub value: f64,
}

#[derive(Deserialize)]
struct Posted {
    id: String,
    satellite: String,
    value: f64,
}

impl Event {
    /// Validates a JSON request body. Other fields are ignored.
    ///
    /// ```
    /// use telemetry_core::Event;
    ///
    /// let event = Event::from_json(br#"{"id": "a-1", "satellite": "sat-7", "value": 3}"#)?;
    /// assert_eq!(event.value, 3.0);
    ///
    /// let err = Event::from_json(br#"{"id": "a-1", "value": 3}"#).unwrap_err();
    /// assert!(err.to_string().contains("missing field `satellite`"), "{err}");
    /// # Ok::<(), telemetry_core::InvalidEvent>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`InvalidEvent`], with a message for the client, when the body is larger than
    /// [`MAX_BODY_BYTES`], is not a JSON object, lacks a field, has a field of the
    /// wrong type, or has an `id` that is empty or longer than [`MAX_ID_CHARS`].
    pub fn from_json(body: &[u8]) -> Result<Self, InvalidEvent> {
        if body.len() > MAX_BODY_BYTES {
            return Err(InvalidEvent::TooLarge { bytes: body.len() });
        }
        let json: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| InvalidEvent::Malformed(e.to_string()))?;
        if !json.is_object() {
            return Err(InvalidEvent::Malformed(
                "expected a JSON object {\"id\", \"satellite\", \"value\"}".to_owned(),
            ));
        }
        let posted: Posted =
            serde_json::from_value(json).map_err(|e| InvalidEvent::Malformed(e.to_string()))?;
        let chars = posted.id.chars().count();
        if chars == 0 || chars > MAX_ID_CHARS {
            return Err(InvalidEvent::Malformed(format!(
                "`id` must have 1 to {MAX_ID_CHARS} characters, not {chars}"
            )));
        }
        // serde_json never yields NaN or infinity from JSON text; checked all the same,
        // since SQLite stores NaN as NULL and the column is NOT NULL.
        if !posted.value.is_finite() {
            return Err(InvalidEvent::Malformed(
                "`value` must be a finite number".to_owned(),
            ));
        }
        Ok(Self {
            id: posted.id,
            satellite: posted.satellite,
            value: posted.value,
        })
    }
}

/// Why a request body is not a valid event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidEvent {
    /// Larger than [`MAX_BODY_BYTES`]: answer `413`.
    TooLarge {
        /// The body's size.
        bytes: usize,
    },
    /// Not JSON, not an object, a field missing or of the wrong type, or a bad `id`:
    /// answer `400`.
    Malformed(String),
}

impl InvalidEvent {
    /// The HTTP status to answer: `413` or `400`.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => 413,
            Self::Malformed(_) => 400,
        }
    }
}

impl fmt::Display for InvalidEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { bytes } => write!(
                f,
                "the body has {bytes} bytes; at most {MAX_BODY_BYTES} are accepted"
            ),
            Self::Malformed(message) => write!(f, "invalid event: {message}"),
        }
    }
}

impl Error for InvalidEvent {}

/// An accepted event with the time it was received: a row of the `telemetry` table,
/// the JSON of `GET /telemetry/{id}`, and a line of a spill file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The event's id.
    pub id: String,
    /// The satellite.
    pub satellite: String,
    /// The measurement.
    pub value: f64,
    /// When it was accepted, in milliseconds since the Unix epoch.
    pub received_at: i64,
}

impl Record {
    /// Stamps `event` with `received_at` (milliseconds since the Unix epoch).
    pub fn new(event: Event, received_at: i64) -> Self {
        Self {
            id: event.id,
            satellite: event.satellite,
            value: event.value,
            received_at,
        }
    }

    /// Stamps `event` with the current time.
    pub fn received_now(event: Event) -> Self {
        Self::new(event, now_millis())
    }

    /// The record as JSON.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "id": self.id,
            "satellite": self.satellite,
            "value": self.value,
            "received_at": self.received_at,
        })
        .to_string()
    }
}

/// Milliseconds since the Unix epoch; 0 if the clock is set before it.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn malformed(body: &str) -> String {
        match Event::from_json(body.as_bytes()) {
            Err(InvalidEvent::Malformed(message)) => message,
            other => panic!("{body}: expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn a_complete_event_is_valid() {
        let event =
            Event::from_json(br#"{"id":"e1","satellite":"sat-1","value":-2.5}"#).expect("valid");
        assert_eq!(
            event,
            Event {
                id: "e1".into(),
                satellite: "sat-1".into(),
                value: -2.5
            }
        );
        let event = Event::from_json(br#"{"value":7,"satellite":"","id":"x","extra":[1]}"#)
            .expect("integer value, empty satellite and unknown fields are accepted");
        assert_eq!(event.value, 7.0);
    }

    #[test]
    fn id_length_is_counted_in_characters() {
        let id: String = "é".repeat(MAX_ID_CHARS);
        let body = format!(r#"{{"id":"{id}","satellite":"s","value":1}}"#);
        assert!(
            Event::from_json(body.as_bytes()).is_ok(),
            "128 two-byte chars"
        );

        let id: String = "a".repeat(MAX_ID_CHARS + 1);
        let body = format!(r#"{{"id":"{id}","satellite":"s","value":1}}"#);
        assert_eq!(
            malformed(&body),
            "`id` must have 1 to 128 characters, not 129"
        );
        assert_eq!(
            malformed(r#"{"id":"","satellite":"s","value":1}"#),
            "`id` must have 1 to 128 characters, not 0"
        );
    }

    #[test]
    fn malformed_or_incomplete_bodies_are_rejected_with_a_message() {
        let cases = [
            ("", "EOF while parsing"),
            ("not json", "expected"),
            (
                r#"{"id":"a","satellite":"s","value":1"#,
                "EOF while parsing",
            ),
            (r#"["a","s",1]"#, "expected a JSON object"),
            ("42", "expected a JSON object"),
            (r#"{"satellite":"s","value":1}"#, "missing field `id`"),
            (r#"{"id":"a","value":1}"#, "missing field `satellite`"),
            (r#"{"id":"a","satellite":"s"}"#, "missing field `value`"),
            (r#"{"id":1,"satellite":"s","value":1}"#, "invalid type"),
            (r#"{"id":"a","satellite":"s","value":"1"}"#, "invalid type"),
            (r#"{"id":"a","satellite":"s","value":null}"#, "invalid type"),
            (r#"{"id":"a","satellite":null,"value":1}"#, "invalid type"),
            (
                r#"{"id":"a","satellite":"s","value":1e999}"#,
                "out of range",
            ),
        ];
        for (body, needle) in cases {
            let message = malformed(body);
            assert!(message.contains(needle), "{body}: {message}");
            assert_eq!(
                InvalidEvent::Malformed(message).status(),
                400,
                "{body} answers 400"
            );
        }
    }

    #[test]
    fn a_body_over_64_kib_is_too_large() {
        let body = vec![b' '; MAX_BODY_BYTES + 1];
        let err = Event::from_json(&body).expect_err("too large");
        assert_eq!(err, InvalidEvent::TooLarge { bytes: 65_537 });
        assert_eq!(err.status(), 413);

        let mut body = br#"{"id":"a","satellite":"s","value":1}"#.to_vec();
        body.resize(MAX_BODY_BYTES, b' ');
        assert!(
            Event::from_json(&body).is_ok(),
            "exactly 64 KiB is accepted"
        );
    }

    #[test]
    fn a_record_renders_as_json() {
        let record = Record::new(
            Event {
                id: "e\"1".into(),
                satellite: "sat".into(),
                value: 0.5,
            },
            1_700_000_000_000,
        );
        let json: serde_json::Value = serde_json::from_str(&record.to_json()).expect("valid JSON");
        assert_eq!(json["id"], "e\"1");
        assert_eq!(json["satellite"], "sat");
        assert_eq!(json["value"], 0.5);
        assert_eq!(json["received_at"], 1_700_000_000_000_i64);
    }
}
