//! Who a client is: SCRAM credentials ([`scram`]) and the users file that
//! holds them ([`users`]). Protocol-neutral: the Kafka face's SASL
//! (`kafka/sasl.rs`) and `streamctl user` use it.

pub mod scram;
pub mod users;
