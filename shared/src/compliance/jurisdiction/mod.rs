//! Compliance by jurisdiction (issue #25), the pure parts: the rule pack as data
//! ([`pack`], shipped in `shared/rules/us.toml`), holidays computed from their definition
//! ([`holiday`]), a number's state from its area code ([`area_code`]), a postal code's state ([`postal`]), and the engine that
//! applies the strictest combination of a contact's candidate jurisdictions ([`engine`]).
//! Nothing here does I/O except [`pack::Pack::load`] reading the operator's file.

pub mod area_code;
pub mod engine;
pub mod holiday;
pub mod pack;
pub mod postal;
pub mod state;

pub use area_code::{AreaCodeState, state_for_number};
pub use engine::{Candidates, Decision, HoldReason, Query, RuleMode, decide, strictest_cap};
pub use pack::{Pack, PackError, RULES_FILE_ENV};
pub use postal::{PostalCode, state_for_postal_code};
pub use state::{Jurisdiction, UsState};
