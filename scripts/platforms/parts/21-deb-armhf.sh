# The armhf .deb: scripts/package --target armv7-unknown-linux-gnueabihf, checked with lintian.
. scripts/platforms/deb-lintian
deb_with_lintian armv7-unknown-linux-gnueabihf
