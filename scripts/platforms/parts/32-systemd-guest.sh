# The unit under systemd as PID 1 (tests/platform_systemd.rs), from the .deb that scripts/package
# builds out of the release build. Cost: docs/testing.md, "Platform tests".
cargo build --release --workspace
cargo test --release --test platform_systemd
