//! A check of the test harness itself, not of the product: the names `device_support::unique`
//! gives namespaces and interfaces never meet across test processes.

mod device_support;

use device_support::unique_for;

#[test]
fn harness_names_of_different_processes_never_meet() {
    assert_ne!(unique_for("wg", 1234, 56), unique_for("wg", 12345, 6));
    assert_ne!(unique_for("wg", 1, 0), unique_for("wg", 100_001, 0));
    assert_eq!(unique_for("wgkw", 4_194_304, 999), "wgkw2hwcg-999");
    assert!(unique_for("wgmem", 4_194_304, 999).len() <= 15);
}
