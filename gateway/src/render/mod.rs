//! Rendering between the two sides: [`to_agent`] plans what an agent sees
//! of a customer's burst; [`to_customer`] turns an agent's message into
//! WhatsApp's. Both are pure.

pub mod to_agent;
pub mod to_customer;
