//! Rollgate's pure decision core.
//!
//! Everything here is a function of (state, facts, now) returning decisions. **Invariant:** this
//! crate does no IO, reads no clock and draws random numbers only from a seed it is given; that
//! is what lets the same code run in the server, the agent and a simulator in virtual time.

pub mod campaign;
pub mod ecosystem;
pub mod member;
pub mod names;
pub mod order;
pub mod policy;
pub mod release;
pub mod revision;
pub mod selector;
pub mod set;
pub mod version;
pub mod window;
