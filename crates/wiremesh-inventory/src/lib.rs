//! Resolves a Clan inventory into "which machine holds which role of which instance, with which
//! final settings", following Clan's own semantics, without Nix.
