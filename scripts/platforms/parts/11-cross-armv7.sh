# armv7-unknown-linux-gnueabihf: the unit tests of every crate and the module's C ABI tests, under qemu-user.
. scripts/platforms/cross-tests
cross_unit_tests armv7-unknown-linux-gnueabihf
