# The arm64 build in qemu-system-aarch64 -M virt against its own kernel's WireGuard
# (tests/platform_arm64.rs); it runs target/aarch64-unknown-linux-gnu/release/{wg-pkcs11,
# libpkcs11_se050.so}. Cost: docs/testing.md, "Platform tests".
. scripts/platforms/cross-env
cross_env aarch64-unknown-linux-gnu
cargo build --release --target aarch64-unknown-linux-gnu -p wg-pkcs11 -p pkcs11-se050
cargo test --release --test platform_arm64
