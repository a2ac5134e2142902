//! What the simulations share: reading their knobs from the environment.

/// The number in environment variable `name`, if it is set and is one.
pub fn env_number(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}
