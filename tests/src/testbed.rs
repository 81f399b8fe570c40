//! The engine's netns testbed (`wirespeed::testbed`), with the test-side
//! conveniences: a missing root is a failure with the reason, and any
//! setup error panics with the command that failed.

pub use wirespeed::testbed::{Link, Testbed};

/// `n` hosts and a link per pair, or a panic saying why not.
pub fn testbed(n: usize, links: &[(usize, usize)]) -> Testbed {
    crate::require_root();
    Testbed::new("wst", n, links).unwrap_or_else(|e| panic!("building the testbed: {e}"))
}

/// Two hosts and one link: the common case.
pub fn pair() -> Testbed {
    testbed(2, &[(0, 1)])
}
