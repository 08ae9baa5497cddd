//! End-to-end scenarios in Chainsaw's format, run with the real kubectl against the test API
//! server (and the kroxide controller when given): the format ([`scenario`]), Chainsaw's
//! assertion rules ([`matching`]), one scenario ([`runner`]) and a whole suite ([`suite`]).

pub mod matching;
pub mod runner;
pub mod scenario;
pub mod suite;
