//! What a call asked to be told (`StatusCallback`, `StatusCallbackMethod`,
//! `StatusCallbackEvent`): a leaf that `calls` keeps with each call and `callback` delivers by.

/// Twilio's `StatusCallbackEvent` values. The final callback (`completed`) is always sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Dialing began (`CallStatus=initiated`).
    Initiated,
    /// Ringing (`CallStatus=ringing`).
    Ringing,
    /// Picked up (`CallStatus=in-progress`).
    Answered,
    /// Ended, whatever the reason (`completed`, `busy`, `no-answer`, `failed`, `canceled`).
    Completed,
}

/// The events a call subscribed to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Events {
    initiated: bool,
    ringing: bool,
    answered: bool,
}

impl Events {
    /// Parses `StatusCallbackEvent` values: each may hold several names separated by spaces or
    /// commas (Twilio's helper libraries repeat the parameter; curl users join with spaces).
    /// Returns the unknown name on error.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut events = Self::default();
        for name in values
            .into_iter()
            .flat_map(|v| v.split([' ', ',']))
            .filter(|n| !n.is_empty())
        {
            match name {
                "initiated" => events.initiated = true,
                "ringing" => events.ringing = true,
                "answered" => events.answered = true,
                "completed" => {}
                other => return Err(other.to_owned()),
            }
        }
        Ok(events)
    }

    /// Whether `event` is sent.
    pub fn wants(self, event: Event) -> bool {
        match event {
            Event::Initiated => self.initiated,
            Event::Ringing => self.ringing,
            Event::Answered => self.answered,
            Event::Completed => true,
        }
    }
}

/// `StatusCallbackMethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Form-encoded body (the default).
    Post,
    /// Parameters in the query string.
    Get,
}

/// Where and what a call reports.
#[derive(Debug, Clone)]
pub struct CallbackSpec {
    /// `StatusCallback`: an absolute `http://` URL.
    pub url: String,
    /// `StatusCallbackMethod`.
    pub method: Method,
    /// `StatusCallbackEvent`.
    pub events: Events,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_like_twilio() {
        let e = Events::parse(["initiated ringing", "answered,completed"]).unwrap();
        assert!(e.wants(Event::Initiated) && e.wants(Event::Ringing) && e.wants(Event::Answered));
        let none = Events::parse([]).unwrap();
        assert!(!none.wants(Event::Ringing));
        assert!(none.wants(Event::Completed));
        assert_eq!(Events::parse(["ringing hangup"]).unwrap_err(), "hangup");
    }
}
