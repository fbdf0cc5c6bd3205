//! Test harness for end-to-end tests in network namespaces: uniquely named namespaces and veth
//! links that are removed even when a test fails, and waits that always have a bound.
