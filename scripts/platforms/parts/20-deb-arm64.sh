# The arm64 .deb: scripts/package --target aarch64-unknown-linux-gnu, checked with lintian.
. scripts/platforms/deb-lintian
deb_with_lintian aarch64-unknown-linux-gnu
