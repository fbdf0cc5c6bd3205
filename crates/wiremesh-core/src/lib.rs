//! The trust and addressing core shared by the controller, the agent and the CLI. No I/O.
