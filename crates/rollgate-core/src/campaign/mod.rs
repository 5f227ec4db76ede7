//! Patch campaigns (issue 7): monthly rings that advance only through real gates.
//!
//! A campaign is written by an operator as TOML ([`spec::CampaignSpec`]) and parsed once into a
//! [`spec::ValidCampaign`]. Each calendar month gets its own instance ([`month::Month`]), which
//! starts at Patch Tuesday plus an offset ([`schedule`]), walks the campaign's steps in order and
//! leaves a step only when its gate ([`gate::evaluate`]) passed or an operator approved it.
//!
//! Like the rest of the crate this module does no IO and reads no clock: every function that
//! depends on time takes the instant it is about, so the server, the store and the simulator run
//! the very same decisions in real or virtual time.
//!
//! **Exception to "core types are not serialized":** the human-facing campaign definition in
//! [`spec`] derives `Deserialize` (never `Serialize`), because the campaign file *is* that
//! boundary and parsing it anywhere else would mean a second copy of every field. Only the raw
//! spec types are deserializable; everything validated ([`spec::ValidCampaign`], the month and
//! gate types) is not, except the month's storage form, `month::MonthSnapshot`: plain data that
//! the server keeps between ticks, checked against the month's invariants when restored.

pub mod dispatch;
pub mod gate;
pub mod month;
pub mod schedule;
pub mod spec;
