//! What the wiremesh controller, the agent and the CLIs share beyond the core's messages: the
//! controller's admin protocol (its requests, its status report and a bounded std client).

pub mod admin;
