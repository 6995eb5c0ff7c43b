# The real I2C path through a real kernel (tests/i2c_kernel.rs): Debian 12's kernel in qemu, its
# /dev/i2c-N a USB I2C adapter on dummy_hcd whose device side relays to the virtual SE050; the
# module inside runs with transport = "i2c". Cost: docs/testing.md, "The real I2C path".
cargo build --release -p pkcs11-se050
cargo test --release --test i2c_kernel -- --test-threads=1
