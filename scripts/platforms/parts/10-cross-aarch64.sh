# aarch64-unknown-linux-gnu: the unit tests of every crate and the module's C ABI tests, under qemu-user.
. scripts/platforms/cross-tests
cross_unit_tests aarch64-unknown-linux-gnu
