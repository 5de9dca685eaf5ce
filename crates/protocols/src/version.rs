//! What every named version of a protocol shares: the name a scenario
//! uses, the list of all of them, and parsing whose error lists them.

use std::fmt;

/// A protocol version chosen by name in a scenario.
pub trait Named: Copy + 'static {
    /// What the names name, for messages (`kernel`, `KVM version`, ...).
    const WHAT: &'static str;
    /// Every version, oldest first.
    const ALL: &'static [Self];
    /// The name scenarios use.
    fn name(self) -> &'static str;
}

/// A name no version of its kind has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// What was looked up ([`Named::WHAT`]).
    pub what: &'static str,
    /// The name given.
    pub given: String,
    /// The names there are.
    pub expected: Vec<&'static str>,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} `{}`: expected one of {}",
            self.what,
            self.given,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

/// The version of kind `V` called `s`.
pub fn parse<V: Named>(s: &str) -> Result<V, UnknownName> {
    V::ALL
        .iter()
        .copied()
        .find(|v| v.name() == s)
        .ok_or_else(|| UnknownName {
            what: V::WHAT,
            given: s.to_string(),
            expected: V::ALL.iter().map(|v| v.name()).collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_parses_from_its_name_and_others_list_the_names() {
        fn round_trip<V: Named + PartialEq + fmt::Debug>() {
            for &v in V::ALL {
                assert_eq!(parse::<V>(v.name()), Ok(v));
            }
            let e = parse::<V>("linux-0.1").unwrap_err();
            assert_eq!(e.expected.len(), V::ALL.len());
            assert!(e.to_string().contains(V::ALL[0].name()));
        }
        round_trip::<crate::linux::Version>();
        round_trip::<crate::linux::dma::DmaKernel>();
        round_trip::<crate::kvm::Version>();
        round_trip::<crate::nested::Version>();
    }
}
